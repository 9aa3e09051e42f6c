"""A connection's ``Edit`` and ``Delete`` frames: checked and stored on the writer.

The author check, the room and the edit window are decided inside the writer's transaction
(:mod:`chatlog.log.edits`), so two edits of one message always get one order: the later one
wins and both earlier versions are kept. The event reaches the room's sockets like a message,
after its commit; a refusal gets an ``Error`` frame (``not-found``, ``not-allowed``) and an
``errors`` row, and changes nothing.

Who is the author: with ``--auth-secret``, the token's user (on any connection); without
auth, only the connection that sent the message (aliases are not identities).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from functools import partial

from chatlog import protocol
from chatlog.log import edits
from chatlog.log.writer import WriterClosed
from chatlog.server.client import Client
from chatlog.server.keys import Runtime

#: How a refusal is told and recorded: ``refuse(code, message, frame_text)``.
Refuse = Callable[[str, str, str], Awaitable[None]]

log = logging.getLogger(__name__)


async def handle(
    rt: Runtime,
    client: Client,
    user: str | None,
    frame: protocol.EditRequest | protocol.DeleteRequest,
    raw: str,
    refuse: Refuse,
) -> None:
    """Store one Edit or Delete frame of ``client`` (``user``: its token's), or refuse it."""
    editor = edits.Editor(
        room=client.room,
        ws_id=client.ws_id,
        author=client.author,
        user=user,
        window=rt.settings.edit_window,
    )
    if isinstance(frame, protocol.EditRequest):
        op = partial(
            edits.edit,
            target_id=frame.target,
            editor=editor,
            body=frame.body,
            text=frame.text,
            raw=raw,
            log=rt.log,
        )
    else:
        op = partial(edits.remove, target_id=frame.target, editor=editor, raw=raw, log=rt.log)
    try:
        await rt.writer.execute(op)
    except edits.ChangeRefused as exc:
        await refuse(exc.code, exc.message, raw)
    except WriterClosed:
        raise
    except Exception as exc:
        log.error("storing a change of %s failed: %s", client.ws_id, exc)
        client.send(protocol.error_frame("store-failed", "the change was not stored"))
