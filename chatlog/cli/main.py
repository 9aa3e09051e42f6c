"""The ``chatlog`` command line: one click group, one error policy (:mod:`chatlog.cli.errors`).

Each subcommand lives in the module named after it; its help ends with an example.
"""

from __future__ import annotations

import click

from chatlog.cli.lazy import Lazy, LazyGroup

#: Every subcommand: where it lives and its one-line summary for ``chatlog --help``. A command's
#: module is imported only when it runs, so each command pays only for what it uses
#: (``tests/test_startup.py`` checks these summaries equal the commands' own).
COMMANDS: dict[str, Lazy] = {
    "serve": Lazy(
        "chatlog.cli.serve:serve_command",
        "Run the chat server; the database is created and migrated on start.",
    ),
    "db": Lazy(
        "chatlog.cli.db:db_group",
        "Migrate the log's schema (wraps alembic; works from an installed package).",
    ),
    "purge": Lazy(
        "chatlog.cli.admin:purge_command",
        "Delete old messages in small batches (safe while the server runs).",
    ),
    "vacuum": Lazy(
        "chatlog.cli.admin:vacuum_command",
        "Give the space of deleted rows back to the file system (run after a large purge).",
    ),
    "sql": Lazy("chatlog.cli.sql:sql_command", "Run one SQL statement against the log, read-only."),
    "replay": Lazy(
        "chatlog.cli.history:replay_command",
        "Print the messages of RANGE (IDs): 100..200 (inclusive), 100.., ..200, or 100.",
    ),
    "export": Lazy(
        "chatlog.cli.history:export_command",
        "Write the log (or a selection, as for replay) as JSON lines with every column.",
    ),
    "import": Lazy(
        "chatlog.cli.history:import_command",
        "Load a `chatlog export` file (or - for stdin) into an empty database, keeping IDs.",
    ),
    "search": Lazy(
        "chatlog.cli.search:search_command",
        'Find messages by their words: QUERY is words (all must match), "quoted phrases", '
        "-word to exclude, OR between two words, and word* for a prefix.",
    ),
    "token": Lazy(
        "chatlog.cli.token:token_group",
        "Make access tokens for a server started with --auth-secret.",
    ),
    "bench": Lazy(
        "chatlog.bench.command:bench",
        "Load a chat server with N clients and report throughput, latency, CPU and losses.",
    ),
    "redact": Lazy(
        "chatlog.cli.edits:redact_command",
        "Delete message ID as a moderator: its text is erased, a tombstone keeps the ID.",
    ),
    "erase": Lazy(
        "chatlog.cli.edits:erase_command",
        "Erase every message of an author (a right-to-erasure request).",
    ),
    "broadcast": Lazy(
        "chatlog.cli.broadcast:broadcast_command",
        'Post TEXT as "system" to rooms; print each new message\'s ID and room.',
    ),
}


@click.group(cls=LazyGroup, lazy=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="chatlog")
def main() -> None:
    """chatlog: a WebSocket chat server whose every message lands in a SQL-queryable log.

    \b
    Example:
        chatlog serve --db chat.db
    """
