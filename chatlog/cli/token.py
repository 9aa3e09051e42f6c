"""``chatlog token issue``: print a signed access token for ``--auth-secret`` servers."""

from __future__ import annotations

import click

from chatlog.cli.helptext import FullSummaries
from chatlog.protocol import ProtocolError
from chatlog.server import auth


@click.group(name="token", cls=FullSummaries)
def token_group() -> None:
    """Make access tokens for a server started with --auth-secret.

    \b
    Example:
        chatlog token issue --user alice --room lobby --ttl 8h
    """


@token_group.command(name="issue")
@click.option("--user", required=True, help="The alias the token's holder will chat as.")
@click.option("--room", help="Limit the token to this room (default: any room).")
@click.option(
    "--ttl", default="1h", show_default=True, help="Lifetime with a unit: 90s, 15m, 1h or 7d."
)
@click.option(
    "--secret",
    envvar="CHATLOG_AUTH_SECRET",
    required=True,
    help="The server's --auth-secret (at least 16 characters, as serve requires). "
    "Env: CHATLOG_AUTH_SECRET (preferred: flags show in ps).",
)
def issue_command(user: str, room: str | None, ttl: str, secret: str) -> None:
    """Print one token; pass it as ?token=... or an "Authorization: Bearer" header.

    \b
    Example:
        CHATLOG_AUTH_SECRET=... chatlog token issue --user alice --room lobby --ttl 8h
    """
    try:
        seconds = auth.parse_ttl(ttl)
        click.echo(auth.issue(secret, user, room=room, ttl=seconds))
    except ProtocolError as exc:
        flag = "--room" if exc.code == "bad-room" else "--user"
        raise click.UsageError(f"{flag}: {exc.message}") from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
