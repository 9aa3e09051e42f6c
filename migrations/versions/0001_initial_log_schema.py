"""initial log schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import datetime
import uuid

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "errors",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("occurred_at", sa.DateTime(), nullable=False),
        sa.Column("ws_id", sa.String(length=32), nullable=True),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_errors")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("errors", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_errors_occurred_at"), ["occurred_at"], unique=False)

    op.create_table(
        "messages",
        sa.Column(
            "id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            autoincrement=True,
            nullable=False,
        ),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("ws_id", sa.String(length=32), nullable=False),
        sa.Column("author", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("raw", sa.Text(), nullable=False),
        sa.Column("sent_at", sa.DateTime(), nullable=False),
        sa.Column("nonce", sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_messages_room_id"), ["room", "id"], unique=False)
        batch_op.create_index(batch_op.f("ix_messages_room_nonce"), ["room", "nonce"], unique=True)
        batch_op.create_index(batch_op.f("ix_messages_sent_at"), ["sent_at"], unique=False)

    op.create_table(
        "meta",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("epoch", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_meta")),
    )
    # The epoch is made with the database: a client holding IDs from another log can tell.
    meta = sa.table("meta", sa.column("id"), sa.column("epoch"), sa.column("created_at"))
    op.bulk_insert(
        meta,
        [
            {
                "id": 1,
                "epoch": uuid.uuid4().hex,
                "created_at": datetime.datetime.now(datetime.UTC).replace(tzinfo=None),
            }
        ],
    )
    op.create_table(
        "websocket_connections",
        sa.Column("ws_id", sa.String(length=32), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("node", sa.String(length=32), nullable=False),
        sa.Column("remote", sa.String(length=128), nullable=True),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.PrimaryKeyConstraint("ws_id", name=op.f("pk_websocket_connections")),
    )
    with op.batch_alter_table("websocket_connections", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_websocket_connections_node"), ["node"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_websocket_connections_room_opened_at"),
            ["room", "opened_at"],
            unique=False,
        )

    op.create_table(
        "users",
        sa.Column("ws_id", sa.String(length=32), nullable=False),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("room", sa.String(length=64), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["ws_id"],
            ["websocket_connections.ws_id"],
            name=op.f("fk_users_ws_id_websocket_connections"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("ws_id", name=op.f("pk_users")),
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_users_room"), ["room"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_users_room"))

    op.drop_table("users")
    with op.batch_alter_table("websocket_connections", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_websocket_connections_room_opened_at"))
        batch_op.drop_index(batch_op.f("ix_websocket_connections_node"))

    op.drop_table("websocket_connections")
    op.drop_table("meta")
    with op.batch_alter_table("messages", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_messages_sent_at"))
        batch_op.drop_index(batch_op.f("ix_messages_room_nonce"))
        batch_op.drop_index(batch_op.f("ix_messages_room_id"))

    op.drop_table("messages")
    with op.batch_alter_table("errors", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_errors_occurred_at"))

    op.drop_table("errors")
