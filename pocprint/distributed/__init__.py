"""The distributed engine: the same steps as the embedded one, run by Celery workers.

`app` holds the Celery application and one task per row step (only the id travels); `engine`
hands due steps to the broker and runs the dispatcher under the lock; `cli` is `pocprint
worker` and `pocprint status`. The database stays the source of truth: a message only says
"this row may have work", and the row's claim decides whether there is any.
"""
