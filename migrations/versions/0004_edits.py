"""edits and deletions: event kinds, the current state, revisions

Revision ID: 0004
Revises: 0002
Create Date: 2026-12-03

Plain ``ADD COLUMN`` (no table rebuild on SQLite: the log may be large). The new columns
are nullable or have a default, so existing rows become ``chat`` rows, never edited.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "messages", sa.Column("kind", sa.String(length=8), server_default="chat", nullable=False)
    )
    op.add_column("messages", sa.Column("target_id", _ID, nullable=True))
    op.add_column("messages", sa.Column("edited_at", sa.DateTime(), nullable=True))
    op.add_column("messages", sa.Column("deleted_at", sa.DateTime(), nullable=True))
    op.create_index(
        op.f("ix_messages_target_id"),
        "messages",
        ["target_id"],
        unique=False,
        sqlite_where=sa.text("target_id IS NOT NULL"),
        postgresql_where=sa.text("target_id IS NOT NULL"),
    )
    op.create_table(
        "message_revisions",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("message_id", _ID, nullable=False),
        sa.Column("edit_id", _ID, nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("replaced_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["message_id"],
            ["messages.id"],
            name=op.f("fk_message_revisions_message_id_messages"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_message_revisions")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_message_revisions_message_id_id"),
        "message_revisions",
        ["message_id", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_message_revisions_message_id_id"), table_name="message_revisions")
    op.drop_table("message_revisions")
    op.drop_index(op.f("ix_messages_target_id"), table_name="messages")
    op.drop_column("messages", "deleted_at")
    op.drop_column("messages", "edited_at")
    op.drop_column("messages", "target_id")
    op.drop_column("messages", "kind")
