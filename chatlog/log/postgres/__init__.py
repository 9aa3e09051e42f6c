"""The PostgreSQL backend of the log (several server processes on one database)."""
