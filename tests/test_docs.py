"""The README documents every command, module, test file and setting, and its shell examples
run; every command's help ends with an example."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterator
from pathlib import Path

import click
import pytest

from chatlog.cli.main import main
from chatlog.settings import Settings, env_name

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands(group: click.Group, prefix: str = "chatlog") -> Iterator[tuple[str, click.Command]]:
    """Every command under ``group``, recursively, with its full name (a lazy group's too)."""
    ctx = click.Context(group)
    for name in sorted(group.list_commands(ctx)):
        command = group.get_command(ctx, name)
        assert command is not None
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


# --- the README names every module, test file and setting ------------------------------------

ROOT = Path(__file__).resolve().parent.parent


def _sections(title: str) -> str:
    """The README's text from the heading ``title`` to the next heading of the same level."""
    level, _, _ = title.partition(" ")
    start = README.index(f"\n{title}\n")
    end = README.find(f"\n{level} ", start + 1)
    return README[start : end if end != -1 else len(README)]


@pytest.mark.parametrize(
    "module",
    sorted(
        str(p.relative_to(ROOT / "chatlog"))
        for p in (ROOT / "chatlog").rglob("*.py")
        if p.name != "__init__.py"
    ),
)
def test_every_module_is_in_the_source_map(module: str) -> None:
    """Each module under chatlog/ has its line in the README's source map."""
    source_map = _sections("### Source map")
    assert f"`{module}`" in source_map or f"`chatlog/{module}`" in source_map, (
        f"chatlog/{module} is not in the README's source map"
    )


@pytest.mark.parametrize(
    "test_file", sorted(p.name for p in (ROOT / "tests").glob("*.py") if p.name != "__init__.py")
)
def test_every_test_file_is_in_the_test_map(test_file: str) -> None:
    """Each file under tests/ has its line in the README's test map."""
    assert f"`tests/{test_file}`" in _sections("### Test map"), f"tests/{test_file} is missing"


def _env_names_in_code() -> set[str]:
    """Every CHATLOG_* variable the code, the tests and the CI script read."""
    names = {env_name(f.name) for f in dataclasses.fields(Settings)}
    for folder in ("chatlog", "tests", "benchmarks"):
        for path in (ROOT / folder).rglob("*.py"):
            names |= set(re.findall(r"\bCHATLOG_[A-Z][A-Z_]*[A-Z]\b", path.read_text()))
    return names


def test_the_env_walk_finds_the_settings() -> None:
    """The walk sees Settings fields and variables read elsewhere, so none can hide."""
    assert {"CHATLOG_PORT", "CHATLOG_LOG_LEVEL", "CHATLOG_DB", "CHATLOG_AUTH_SECRET"} <= (
        _env_names_in_code()
    )


@pytest.mark.parametrize("name", sorted(_env_names_in_code()))
def test_every_setting_is_in_the_readme(name: str) -> None:
    """Each CHATLOG_* variable is named in the README, or its flag is in the Configuration table
    (whose rule is that every serve flag is also CHATLOG_<FLAG>)."""
    flag = "--" + name.removeprefix("CHATLOG_").lower().replace("_", "-")
    in_table = any(
        line.startswith(f"| `{flag}`") or f"`{flag}` /" in line or f"/ `{flag}`" in line
        for line in _sections("## Configuration").splitlines()
    )
    assert f"`{name}`" in README or in_table, f"{name} is not in the README"


def test_every_file_the_readme_names_exists() -> None:
    """A file the README names (`server/hub.py`, `tests/test_sql.py`, `chat.js`) is there."""
    # (a leading / is a URL path the server answers, such as /static/chat.js)
    named = set(re.findall(r"`([\w.-][\w./-]*\.(?:py|js|css|html|svg|toml|md))`", README))
    folders = [ROOT, ROOT / "chatlog", ROOT / "chatlog/server/static", ROOT / "tests"]
    missing = {n for n in named if not any((folder / n).exists() for folder in folders)}
    assert len(named) > 50 and not missing, sorted(missing)
