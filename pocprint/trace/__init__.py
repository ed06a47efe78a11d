"""Traceability: the hash-chained audit log, the device record, labels and exports."""
