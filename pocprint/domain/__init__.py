"""Pure rules of the lab: no I/O, no Flask, no database."""
