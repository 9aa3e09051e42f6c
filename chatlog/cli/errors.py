"""The one error policy of every ``chatlog`` command: an expected failure is one ``Error:`` line.

The line says what is wrong and what to do, on stderr; the exit status is 1, or 2 for a usage
mistake (a bad flag, value or range). Ctrl-C exits 130 without a traceback (0 where it is how
a command ends, see :func:`interrupt_ends_run`); a closed pipe (``| head``) exits 0 quietly.
Any other exception is a bug, and keeps its traceback.

:class:`PolicyGroup` applies the policy around every subcommand of the group, including the
ones defined elsewhere (``bench``), and to the parsing of their flags. :data:`RULES` is the
table of which exception becomes which message; a new kind of failure is one more row.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from chatlog.cli.helptext import FullSummaries
from chatlog.settings import Settings, SettingsError, database_url

if TYPE_CHECKING:  # the rules name these by where they live: see _Named
    from alembic.util import CommandError
    from sqlalchemy.exc import ArgumentError

    from chatlog.cli.schema import SchemaNotCurrent
    from chatlog.history.replay import SelectionError

#: Where ``--db`` leaves the database it was given (``ctx.meta`` is shared by nested contexts).
_DATABASE_KEY = "chatlog.cli.database"
#: Network failures that mean "PostgreSQL is not there", not "this file cannot be used".
_UNREACHABLE = frozenset(
    {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ETIMEDOUT, errno.ECONNRESET}
)


class BadInput(click.ClickException):
    """A usage mistake whose message already says what to do: one line, exit 2."""

    exit_code = 2


@dataclass(frozen=True)
class Database:
    """The ``--db`` a command was given, named the way people know it (never with a password)."""

    #: The SQLAlchemy URL, or ``None`` for a ``--db`` that is not one.
    url: str | None = None

    @classmethod
    def given(cls, value: str) -> Database:
        """What ``--db VALUE`` names; never fails (a bad value is reported by the command)."""
        try:
            return cls(database_url(value))
        except SettingsError:
            return cls()

    @property
    def name(self) -> str:
        """The file's path, or which database on which PostgreSQL server."""
        from chatlog.log.open import describe

        return describe(self.url)[0] if self.url is not None else "the database"

    @property
    def server(self) -> str | None:
        """``host:port`` of the database server, ``None`` for a file: a refused connection
        then means the server is not there, not that a file is unusable."""
        from chatlog.log.open import describe

        return describe(self.url)[1] if self.url is not None else None


def remember_database(ctx: click.Context, _param: click.Parameter, value: str | None) -> str | None:
    """The ``--db`` option's callback: note the database so that an error can name it."""
    ctx.meta[_DATABASE_KEY] = Database.given(value or Settings.db)
    return value


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# --- the rules: exception -> one line --------------------------------------------------------

#: A rule turns an exception into the error to show, or ``None`` when it is not its kind.
Rule = Callable[[Any, Database], click.ClickException | None]


def _as_written(exc: Exception, _db: Database) -> click.ClickException:
    # These messages are written for people already: what is wrong, then what to do.
    return click.ClickException(str(exc))


def _bad_selection(exc: SelectionError, _db: Database) -> click.ClickException:
    return BadInput(str(exc))


def not_a_url(exc: Exception) -> str:
    """Why ``--db`` does not parse as a URL (not the URL itself: it may hold a password)."""
    return (
        f"--db is not a database URL ({_first_line(exc)}); give a file path or "
        "postgresql://USER@HOST[:PORT]/DB"
    )


def _bad_url(exc: ArgumentError, _db: Database) -> click.ClickException:
    return BadInput(not_a_url(exc))


def _migration(exc: CommandError, db: Database) -> click.ClickException:
    return click.ClickException(
        f"cannot migrate {db.name} ({_first_line(exc)}); `chatlog db current` shows where it is"
    )


def _schema(exc: SchemaNotCurrent, db: Database) -> click.ClickException:
    if exc.revision is None:
        return click.ClickException(
            f"{db.name} is not a chatlog database (it has no chatlog tables); give the path of "
            "a log made by `chatlog serve`, or create one with `chatlog db upgrade`"
        )
    from chatlog.log import migrate

    if exc.revision in migrate.revisions():
        return click.ClickException(
            f"{db.name} is at schema revision {exc.revision} and this chatlog needs "
            f"{exc.head}; run `chatlog db upgrade` on it first"
        )
    return click.ClickException(
        f"{db.name} is at schema revision {exc.revision}, which this chatlog does not know "
        f"(its newest is {exc.head}); use the chatlog version that wrote it"
    )


def _missing_driver(exc: ModuleNotFoundError, _db: Database) -> click.ClickException | None:
    if exc.name != "asyncpg":
        return None
    return click.ClickException(
        "PostgreSQL support is not installed (no module asyncpg); "
        "install it with: pip install 'chatlog[postgres]'"
    )


def _database(exc: Exception, db: Database) -> click.ClickException | None:
    # The log's backend knows what its driver's errors mean.
    from chatlog.log.open import explain_failure

    message = explain_failure(db.url, exc) if db.url is not None else None
    return None if message is None else click.ClickException(message)


def _os_error(exc: OSError, db: Database) -> click.ClickException:
    unreachable = isinstance(exc, socket.gaierror | TimeoutError) or exc.errno in _UNREACHABLE
    if db.server is not None and unreachable:
        if isinstance(exc, socket.gaierror):
            reason = (exc.strerror or "unknown host").lower()
        elif exc.errno is not None:
            reason = os.strerror(exc.errno).lower()
        else:
            reason = "timed out"
        return click.ClickException(
            f"cannot reach PostgreSQL at {db.server} ({reason}); is it running?"
        )
    if exc.errno == errno.EADDRINUSE:
        # (serve checks the port first; this is one taken between that check and the bind)
        return click.ClickException(
            "cannot listen: the port is in use; pick another with --port or CHATLOG_PORT"
        )
    reason = (exc.strerror or _first_line(exc)).lower()
    if exc.filename is not None:
        return click.ClickException(
            f"cannot use {exc.filename} ({reason}); check the path and its permissions"
        )
    return click.ClickException(reason)


@dataclass(frozen=True)
class _Named:
    """An exception class named by its module, so the policy imports nothing to know it: an
    exception of a class whose module was never imported cannot have been raised (this keeps
    alembic, SQLAlchemy and the history modules out of a command that does not use them)."""

    module: str
    name: str

    def loaded(self) -> tuple[type[BaseException], ...]:
        """The class, or no class when its module is not loaded."""
        module = sys.modules.get(self.module)
        return (getattr(module, self.name),) if module is not None else ()


#: What a rule matches: exception classes, or ones named by where they live.
Match = type[BaseException] | _Named | tuple[type[BaseException] | _Named, ...]

#: Which exceptions are expected failures, and the line each becomes; the first match wins.
#: (The log's ``LogUnavailable`` is a ``SettingsError``: its message is written for people.)
RULES: tuple[tuple[Match, Rule], ...] = (
    ((SettingsError, _Named("chatlog.history.transfer", "ImportFailed")), _as_written),
    (_Named("chatlog.history.replay", "SelectionError"), _bad_selection),
    (_Named("sqlalchemy.exc", "ArgumentError"), _bad_url),
    (_Named("alembic.util.exc", "CommandError"), _migration),
    (_Named("chatlog.cli.schema", "SchemaNotCurrent"), _schema),
    (ModuleNotFoundError, _missing_driver),
    (Exception, _database),  # the database driver's errors, bare or wrapped by SQLAlchemy
    (OSError, _os_error),
)


def translate(exc: BaseException, db: Database) -> click.ClickException | None:
    """The one-line error for an expected failure, or ``None`` for a bug."""
    for match, rule in RULES:
        if isinstance(exc, _classes(match)) and (failure := rule(exc, db)) is not None:
            return failure
    return None


def _classes(match: Match) -> tuple[type[BaseException], ...]:
    """The classes ``match`` stands for now."""
    parts = match if isinstance(match, tuple) else (match,)
    return tuple(
        c for part in parts for c in (part.loaded() if isinstance(part, _Named) else (part,))
    )


# --- applying it -----------------------------------------------------------------------------


def _one_line_usage(exc: click.UsageError) -> BadInput:
    """click's usage error without the usage block: the message, then where the help is."""
    message = exc.format_message().rstrip()
    if exc.ctx is None:
        return BadInput(message)
    stop = "" if message.endswith((".", "?", "!")) else "."
    return BadInput(f"{message}{stop} See `{exc.ctx.command_path} --help`.")


def _quiet_stdout() -> None:
    # Point stdout at /dev/null so the interpreter's final flush does not complain.
    with contextlib.suppress(OSError, ValueError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


@contextlib.contextmanager
def policy(ctx: click.Context | None) -> Iterator[None]:
    """Turn what happens inside into the exit status and ``Error:`` line the policy says."""
    try:
        yield
    except click.UsageError as exc:
        if type(exc).show is not click.UsageError.show:
            raise  # one that shows something else on purpose (the help, for a bare group)
        raise _one_line_usage(exc) from None
    except (click.ClickException, click.exceptions.Exit):
        raise
    except KeyboardInterrupt:
        raise click.exceptions.Exit(130) from None
    except BrokenPipeError:
        _quiet_stdout()
        raise click.exceptions.Exit(0) from None
    except Exception as exc:
        db = ctx.meta.get(_DATABASE_KEY, Database()) if ctx is not None else Database()
        failure = translate(exc, db)
        if failure is None:
            raise
        raise failure from None


@contextlib.contextmanager
def interrupt_ends_run(enabled: bool = True) -> Iterator[None]:
    """Ctrl-C is how this run ends (``replay --follow``, ``--pace``): exit 0, not 130."""
    try:
        yield
    except KeyboardInterrupt:
        if not enabled:
            raise
        raise click.exceptions.Exit(0) from None


class PolicyGroup(FullSummaries):
    """A click group whose subcommands, and the parsing of their flags, follow :func:`policy`."""

    def make_context(
        self,
        info_name: str | None,
        args: list[str],
        parent: click.Context | None = None,
        **extra: Any,
    ) -> click.Context:
        with policy(parent):  # the group's own flags (a subcommand's are parsed in invoke)
            return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx: click.Context) -> Any:
        with policy(ctx):
            return super().invoke(ctx)
