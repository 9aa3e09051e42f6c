"""Alembic environment: async engines, batch mode for SQLite, and connection sharing.

The server runs migrations on its own connection (``config.attributes["connection"]``); the
``alembic`` command line builds an engine from ``CHATLOG_DB`` or ``sqlalchemy.url``.
"""

from __future__ import annotations

import asyncio
import logging.config
import os

from alembic import context
from sqlalchemy import Connection

from chatlog.log.schema import metadata

config = context.config
if config.config_file_name is not None and config.attributes.get("connection") is None:
    logging.config.fileConfig(config.config_file_name, disable_existing_loggers=False)


def _include_name(name: str | None, type_: str, parent_names: object) -> bool:
    # The search index (migration 0003) is a different kind of table on each backend (FTS5
    # with its shadow tables; a tsvector table): no model describes it, so drift checks skip it.
    return not (type_ == "table" and (name or "").startswith("messages_fts"))


def run_with(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        render_as_batch=True,
        compare_type=True,
        include_name=_include_name,
    )
    with context.begin_transaction():
        context.run_migrations()


async def run_async() -> None:
    from chatlog.log.open import open_log
    from chatlog.settings import database_url

    url = database_url(os.environ.get("CHATLOG_DB") or config.get_main_option("sqlalchemy.url"))
    log = open_log(url)
    try:
        async with log.engine.begin() as conn:
            await conn.run_sync(run_with)
    finally:
        await log.dispose()


connection = config.attributes.get("connection")
if context.is_offline_mode():
    context.configure(url=config.get_main_option("sqlalchemy.url"), target_metadata=metadata)
    with context.begin_transaction():
        context.run_migrations()
elif connection is not None:
    run_with(connection)
else:
    asyncio.run(run_async())
