"""The log: every message, with a stable integer ID, in SQLite or PostgreSQL.

Use it through :mod:`chatlog.log.backend` (the interface), :mod:`chatlog.log.open` (the one
place that picks a backend from the URL), :mod:`chatlog.log.writer` (the single writer) and
the pure values of :mod:`chatlog.log.model`; the backends live in ``sqlite/`` and
``postgres/``.
"""
