"""A command group that imports a subcommand's module only when that command runs.

Importing every command's module made each ``chatlog`` invocation pay for the server
(aiohttp), the bench and the database layers before doing anything. Here the group knows each
command by name, where it lives (``"module:attribute"``) and its one-line summary, so
``chatlog --help`` lists them all without importing any; ``tests/test_startup.py`` checks the
summaries equal each command's own short help.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import click

from chatlog.cli.errors import PolicyGroup


@dataclass(frozen=True)
class Lazy:
    """Where a subcommand is defined and the summary ``--help`` shows for it."""

    #: ``"package.module:attribute"``: the click command.
    target: str
    #: Its short help, as click would print it (checked by a test).
    summary: str

    def load(self) -> click.Command:
        """Import the command's module and return the command."""
        module, _, attribute = self.target.partition(":")
        command = getattr(importlib.import_module(module), attribute)
        if not isinstance(command, click.Command):
            raise TypeError(f"{self.target} is not a click command")
        return command


class LazyGroup(PolicyGroup):
    """A :class:`PolicyGroup` whose subcommands are imported on first use."""

    def __init__(self, *args: Any, lazy: Mapping[str, Lazy] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy: dict[str, Lazy] = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*self.commands, *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in self.lazy:
            self.add_command(self.lazy[cmd_name].load(), cmd_name)
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [
            (name, self.lazy[name].summary if name in self.lazy else self._summary(ctx, name))
            for name in self.list_commands(ctx)
            if name in self.lazy or not self.commands[name].hidden
        ]
        if rows:
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def _summary(self, ctx: click.Context, name: str) -> str:
        return self.commands[name].get_short_help_str(1000)
