"""Use cases: the only code that changes state. One transaction each, audited."""
