"""The log's tables, as SQLAlchemy Core metadata. Only alembic migrations create or change them.

Each table mirrors a global of the IRIS sample (see README, "Schema"). Timestamps are naive
``DATETIME`` values in UTC with microseconds, so plain SQL can compare and format them.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

from chatlog.log import basics

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: How a timestamp is stored on SQLite (see :mod:`chatlog.log.basics`, importable without this).
STORED_TIME_FORMAT = basics.STORED_TIME_FORMAT

# SQLite needs exactly INTEGER for a rowid alias; elsewhere ids are 64-bit.
Id = BigInteger().with_variant(Integer(), "sqlite")

#: ^Chat.Messages(mid): one row per chat message, ids never reused (AUTOINCREMENT).
messages = Table(
    "messages",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("room", String(64), nullable=False),
    Column("ws_id", String(32), nullable=False),
    Column("author", String(64), nullable=False),
    Column("message", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("sent_at", DateTime(), nullable=False),
    Column("nonce", String(64), nullable=True),
    #: ``chat``, or an event about the chat row ``target_id``: ``edit`` or ``delete``
    #: (migration 0004; see :mod:`chatlog.log.edits`).
    Column("kind", String(8), nullable=False, server_default="chat"),
    Column("target_id", Id, nullable=True),
    #: The chat row's current state: when it was last edited, when it was deleted (a
    #: tombstone: ``message``, ``text`` and ``raw`` erased).
    Column("edited_at", DateTime(), nullable=True),
    Column("deleted_at", DateTime(), nullable=True),
    Index(None, "room", "id"),
    Index(None, "sent_at"),
    Index(None, "room", "nonce", unique=True),
    # Partial: chat rows (nearly all) have no target, so appending one costs no index write.
    Index(
        None,
        "target_id",
        sqlite_where=text("target_id IS NOT NULL"),
        postgresql_where=text("target_id IS NOT NULL"),
    ),
    sqlite_autoincrement=True,
)

#: Every column of ``messages``, in table order (the keys of an exported row).
COLUMNS = basics.COLUMNS

#: The earlier versions of an edited chat row, one per edit, oldest first: what the row said
#: before the edit event ``edit_id`` replaced it. Erased with the message.
message_revisions = Table(
    "message_revisions",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("message_id", Id, ForeignKey("messages.id", ondelete="CASCADE"), nullable=False),
    Column("edit_id", Id, nullable=False),
    Column("message", Text, nullable=False),
    Column("text", Text, nullable=False),
    Column("raw", Text, nullable=False),
    Column("replaced_at", DateTime(), nullable=False),
    Index(None, "message_id", "id"),
    sqlite_autoincrement=True,
)

#: ^Chat.WebSocketConnections(wsid): one row per live connection.
websocket_connections = Table(
    "websocket_connections",
    metadata,
    Column("ws_id", String(32), primary_key=True),
    Column("room", String(64), nullable=False),
    Column("node", String(32), nullable=False),
    Column("remote", String(128), nullable=True),
    Column("opened_at", DateTime(), nullable=False),
    Index(None, "room", "opened_at"),
    Index(None, "node"),
)

#: ^Chat.Users(wsid): one row per live connection that has set an alias.
users = Table(
    "users",
    metadata,
    Column(
        "ws_id",
        String(32),
        ForeignKey("websocket_connections.ws_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("alias", String(64), nullable=False),
    Column("room", String(64), nullable=False),
    Column("updated_at", DateTime(), nullable=False),
    Index(None, "room"),
)

#: ^Chat.Errors(n,...): one row per error, ids never reused.
errors = Table(
    "errors",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("occurred_at", DateTime(), nullable=False),
    Column("ws_id", String(32), nullable=True),
    Column("kind", String(64), nullable=False),
    Column("detail", Text, nullable=False),
    Index(None, "occurred_at"),
    sqlite_autoincrement=True,
)

#: One row: the log's random epoch, made with the database, so clients notice a replaced log.
meta = Table(
    "meta",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("epoch", String(32), nullable=False),
    Column("created_at", DateTime(), nullable=False),
)

#: Per room, the newest message ID retention has deleted, so resume and replay can say that
#: history before it is gone rather than silently starting later.
retention = Table(
    "retention",
    metadata,
    Column("room", String(64), primary_key=True),
    Column("purged_through", Id, nullable=False),
    Column("purged_at", DateTime(), nullable=False),
)

#: One row per running server process (its ``node`` id), with a heartbeat, so rows of a node
#: that stopped heartbeating can be swept by the others.
nodes = Table(
    "nodes",
    metadata,
    Column("node", String(32), primary_key=True),
    Column("started_at", DateTime(), nullable=False),
    Column("last_seen", DateTime(), nullable=False),
    Column("address", String(128), nullable=True),
)
