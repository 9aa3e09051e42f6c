"""The ``nodes`` table on SQLite: each server's heartbeat, and the sweep of dead servers.

Every process sharing a SQLite file runs on the same machine (WAL needs shared memory), so
the clock is one clock, and a node's row also says its process ID: a node whose process is
gone is dead at once (a server restarted after ``kill -9`` sweeps its predecessor's rows
before taking connections); one whose process exists but stopped heartbeating is dead after
the node timeout, as on PostgreSQL.
"""

from __future__ import annotations

import os
import re
import socket
from datetime import timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from chatlog.log import presence
from chatlog.log.model import utcnow
from chatlog.log.schema import nodes

_PROCESS = re.compile(r" pid (\d+) on (\S+)$")


def address_of(address: str | None) -> str:
    """The ``address`` column of this process: where it listens, its PID and host."""
    return f"{address or '-'} pid {os.getpid()} on {socket.gethostname()}"[-128:]


def process_gone(address: str | None) -> bool:
    """Whether the row's process is known to have exited (same host, no such PID)."""
    found = _PROCESS.search(address or "")
    if found is None or found.group(2) != socket.gethostname():
        return False
    try:
        os.kill(int(found.group(1)), 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError):
        return False
    return False


async def heartbeat(conn: AsyncConnection, node: str, address: str) -> bool:
    """Insert or refresh this node's row; ``True`` when the row had to be (re)created."""
    now = utcnow()
    result = await conn.execute(update(nodes).where(nodes.c.node == node).values(last_seen=now))
    if result.rowcount:
        return False
    await conn.execute(
        insert(nodes).values(node=node, started_at=now, last_seen=now, address=address)
    )
    return True


async def sweep_dead(conn: AsyncConnection, silent_for: float, me: str) -> set[str]:
    """Delete the rows of dead nodes (process gone, or silent for ``silent_for`` seconds)
    and of connections that belong to no node; the rooms whose user lists changed."""
    cutoff = utcnow() - timedelta(seconds=silent_for)
    rows = (await conn.execute(select(nodes.c.node, nodes.c.address, nodes.c.last_seen))).all()
    dead = [n for n, address, seen in rows if n != me and (seen < cutoff or process_gone(address))]
    return await presence.sweep_nodes(conn, select(nodes.c.node).where(nodes.c.node.in_(dead)))


async def others_alive(conn: AsyncConnection, me: str) -> int:
    """How many other nodes have a row."""
    return int(
        await conn.scalar(select(func.count()).select_from(nodes).where(nodes.c.node != me)) or 0
    )
