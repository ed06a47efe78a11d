"""Read-only queries for pages, reports and exports (no state changes here)."""
