"""``--help`` of a command group lists every subcommand with its whole first sentence.

click cuts each summary to the terminal's width and ends it with ``...`` (``db  Migrate the
log's schema (wraps alembic; works from an...``); here the sentence is kept whole, and the
formatter wraps it under itself when it is long.
"""

from __future__ import annotations

import click

#: Longer than any first sentence, so click never cuts one.
_NO_LIMIT = 1000


class FullSummaries(click.Group):
    """A click group whose help lists each subcommand's full first sentence."""

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = []
        for name in self.list_commands(ctx):
            command = self.get_command(ctx, name)
            if command is not None and not command.hidden:
                rows.append((name, command.get_short_help_str(_NO_LIMIT)))
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)
