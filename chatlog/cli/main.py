"""The ``chatlog`` command line: one click group, one error policy (:mod:`chatlog.cli.errors`).

Each subcommand lives in the module named after it; its help ends with an example.
"""

from __future__ import annotations

import click

from chatlog.bench.command import bench
from chatlog.cli.admin import purge_command, vacuum_command
from chatlog.cli.broadcast import broadcast_command
from chatlog.cli.db import db_group
from chatlog.cli.edits import erase_command, redact_command
from chatlog.cli.errors import PolicyGroup
from chatlog.cli.history import export_command, import_command, replay_command, sql_command
from chatlog.cli.search import search_command
from chatlog.cli.serve import serve_command
from chatlog.cli.token import token_group


@click.group(cls=PolicyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chatlog")
def main() -> None:
    """chatlog: a WebSocket chat server whose every message lands in a SQL-queryable log.

    \b
    Example:
        chatlog serve --db chat.db
    """


for _command in (
    serve_command,
    db_group,
    purge_command,
    vacuum_command,
    sql_command,
    replay_command,
    export_command,
    import_command,
    search_command,
    token_group,
    bench,
    redact_command,
    erase_command,
    broadcast_command,
):
    main.add_command(_command)
