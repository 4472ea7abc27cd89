"""Append-only, hash-chained audit trail (issue 7): store, verification, export, retention."""
