"""The README documents every command, and every command's help ends with an example."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from chatlog.cli.main import main

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands(group: click.Group, prefix: str = "chatlog") -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group``, recursively, with its full name."""
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        yield path, command
        if isinstance(command, click.Group):
            yield from commands(command, path)


ALL = list(commands(main))


def test_the_walk_finds_the_commands() -> None:
    """The walk reaches nested commands, so a missing entry cannot hide in a group."""
    names = [path for path, _ in ALL]
    assert {"chatlog serve", "chatlog db upgrade", "chatlog replay", "chatlog sql"} <= set(names)


@pytest.mark.parametrize("path", [path for path, _ in ALL])
def test_every_command_is_in_the_readme(path: str) -> None:
    """Each command's full name (e.g. `chatlog db upgrade`) appears in README.md."""
    assert f"`{path}" in README or f"\n{path} " in README, f"{path} is not documented in README"


@pytest.mark.parametrize("path, command", ALL)
def test_help_ends_with_an_example(path: str, command: click.Command) -> None:
    """Each command's help text ends with an Example: block that runs that very command."""
    assert command.help is not None
    tail = command.help.rsplit("Example:", 1)
    assert len(tail) == 2, f"{path} help has no Example:"
    assert path in tail[1], f"{path} example does not run {path!r}"
