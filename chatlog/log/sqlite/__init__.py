"""The SQLite backend of the log (the embedded default: one file, one server process)."""
