"""full-text search index over messages, filled from the existing log

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-03

SQLite: an FTS5 table ``messages_fts`` (rowid = message ID) of each message's folded words,
and a trigger that removes a deleted message's entry. PostgreSQL: ``messages_fts (id, words
tsvector)`` with a GIN index, its rows deleted with their message (``ON DELETE CASCADE``).
The words are folded in Python (chatlog.log.words) and written through the backend's index
module, the same code the writer uses, so an existing log is indexed exactly as new messages
are. A later change of the folding rules needs a migration that rebuilds the index.

Note for later migrations on SQLite: a batch ``ALTER`` of ``messages`` recreates the table,
which drops the ``messages_fts_delete`` trigger; it must be created again.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

#: Messages read and indexed per statement while filling the index.
FILL_BATCH = 5000

SQLITE_TABLE = (
    # columnsize=0: no per-row size table to write on every append (measured: about 1 µs of a
    # 5 µs index insert); only ranking (--order rank) pays, by re-reading the matched rows.
    "CREATE VIRTUAL TABLE messages_fts USING fts5("
    "words, tokenize = 'ascii', detail = full, columnsize = 0)"
)
SQLITE_TRIGGER = (
    "CREATE TRIGGER messages_fts_delete AFTER DELETE ON messages BEGIN "
    "DELETE FROM messages_fts WHERE rowid = old.id; END"
)


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name == "sqlite":
        from chatlog.log.sqlite.search import INSERT, params

        op.execute(SQLITE_TABLE)
        op.execute(SQLITE_TRIGGER)
        insert: sa.TextClause = sa.text(INSERT)
    else:
        from chatlog.log.postgres.search import INSERT as PG_INSERT
        from chatlog.log.postgres.search import params  # type: ignore[assignment]

        op.create_table(
            "messages_fts",
            sa.Column("id", sa.BigInteger(), nullable=False),
            sa.Column("words", postgresql.TSVECTOR(), nullable=False),
            sa.ForeignKeyConstraint(
                ["id"],
                ["messages.id"],
                name=op.f("fk_messages_fts_id_messages"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f("pk_messages_fts")),
        )
        op.create_index("ix_messages_fts_words", "messages_fts", ["words"], postgresql_using="gin")
        insert = PG_INSERT
    last = 0
    select = sa.text("SELECT id, text FROM messages WHERE id > :last ORDER BY id LIMIT :n")
    while rows := bind.execute(select, {"last": last, "n": FILL_BATCH}).all():
        bind.execute(insert, params((int(r[0]), str(r[1])) for r in rows))
        last = int(rows[-1][0])


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS messages_fts_delete")
        op.execute("DROP TABLE IF EXISTS messages_fts")
    else:
        op.drop_table("messages_fts")
