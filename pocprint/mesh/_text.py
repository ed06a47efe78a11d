"""Small text helpers shared by the mesh readers for building technician-facing messages."""

from __future__ import annotations


def printable(text: str, limit: int = 60) -> str:
    """A file-supplied string made safe to show in a message or a log line."""
    clean = "".join(c if c.isprintable() else "?" for c in text[:limit])
    return clean + ("..." if len(text) > limit else "")


def mb(size: int) -> str:
    """A byte count in megabytes, the unit technicians see in upload limits."""
    return f"{size / 1_000_000:.1f} MB"
