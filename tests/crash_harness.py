"""Kill -9 under load, restart, and check the log against what clients were shown (Jepsen-style).

One round: ``chatlog serve`` runs as a subprocess on a temp SQLite file; ``clients`` WebSocket
clients in ``rooms`` rooms send about ``rate`` messages per second in total, each with a unique
``Nonce``, and record every Chat frame they receive. At a seeded random moment the server gets
SIGKILL. The checker then reads the database file and reports:

* ``lost``: Chat frames some client received whose ID is missing or holds other content;
* ``duplicates``: nonces stored more than once (a retried message stored twice);
* ``phantoms``: stored messages no client ever sent;
* ``integrity``: ``PRAGMA integrity_check``;
* ``stale``: connection rows still present once the server has started again;
* ``retry_duplicates``: after the restart every unacknowledged message is sent again with
  its nonce; a nonce stored twice after that is a duplicate too.

Run more rounds than the test suite does::

    python -m tests.crash_harness --rounds 200 --seed 1000
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import random
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.backends import rows, scalar
from tests.helpers import ServerProcess


@dataclass
class RoundResult:
    """What one round saw; ``ok`` when nothing was lost, duplicated or corrupted."""

    seed: int
    kill_after: float
    sent: int = 0
    received: int = 0
    stored: int = 0
    lost: list[Any] = field(default_factory=list)
    duplicates: int = 0
    phantoms: int = 0
    integrity: str = ""
    stale: int = -1
    restart_seconds: float = 0.0
    retried: int = 0
    retry_duplicates: int = 0

    @property
    def ok(self) -> bool:
        return (
            not self.lost
            and self.duplicates == 0
            and self.phantoms == 0
            and self.integrity == "ok"
            and self.stale == 0
            and self.retry_duplicates == 0
        )

    def line(self) -> str:
        return (
            f"seed {self.seed}: kill at {self.kill_after:.2f}s, sent {self.sent}, "
            f"received {self.received} frames, stored {self.stored}, lost {len(self.lost)}, "
            f"duplicates {self.duplicates}, phantoms {self.phantoms}, integrity {self.integrity},"
            f" stale rows {self.stale}, restart {self.restart_seconds:.2f}s, "
            f"retried {self.retried} (duplicates {self.retry_duplicates})"
        )


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class LoadClient:
    """Sends paced messages with nonces; records every Chat frame it is shown."""

    def __init__(self, name: str, room: str) -> None:
        self.name = name
        self.room = room
        self.sent: dict[str, str] = {}  # nonce -> body
        self.seen: dict[int, tuple[str, str | None, str]] = {}  # id -> (room, nonce, body)
        self.acked: set[str] = set()
        self.ws: aiohttp.ClientWebSocketResponse | None = None

    async def run(self, session: aiohttp.ClientSession, url: str, rate: float) -> None:
        try:
            self.ws = await session.ws_connect(f"{url}?room={self.room}")
            await asyncio.gather(self._send(rate), self._read())
        except (aiohttp.ClientError, ConnectionError, RuntimeError):
            pass  # the server was killed

    async def _send(self, rate: float) -> None:
        assert self.ws is not None
        loop = asyncio.get_running_loop()
        due, n = loop.time(), 0
        while not self.ws.closed:
            nonce = f"{self.name}-{n}"
            body = _b64(f"{self.name} message {n}")
            self.sent[nonce] = body
            await self.ws.send_str(json.dumps({"Message": body, "Nonce": nonce}))
            n += 1
            due += 1 / rate
            await asyncio.sleep(max(0.0, due - loop.time()))

    async def _read(self) -> None:
        assert self.ws is not None
        async for msg in self.ws:
            if msg.type is not aiohttp.WSMsgType.TEXT:
                break
            frame = json.loads(msg.data)
            if frame.get("Type") == "Chat":
                nonce = frame.get("Nonce")
                self.seen[frame["ID"]] = (frame["Room"], nonce, frame["Message"])
                if nonce in self.sent:
                    self.acked.add(nonce)


async def load_and_kill(
    server: ServerProcess,
    seed: int,
    *,
    clients: int,
    rooms: int,
    rate: float,
    kill_range: tuple[float, float],
) -> tuple[list[LoadClient], float]:
    rng = random.Random(seed)
    kill_after = rng.uniform(*kill_range)
    load = [LoadClient(f"s{seed}c{i}", f"room{i % rooms}") for i in range(clients)]
    async with aiohttp.ClientSession() as session:
        tasks = [asyncio.create_task(c.run(session, server.url, rate / clients)) for c in load]
        # The clock starts once every client has had a message acknowledged: a server still
        # warming up after the last restart must not turn a round into an idle one.
        for _ in range(2000):  # at most 20 s
            if all(c.acked for c in load):
                break
            await asyncio.sleep(0.01)
        await asyncio.sleep(kill_after)
        server.kill()
        await asyncio.wait(tasks, timeout=10)
    return load, kill_after


def check_log(db: str, load: list[LoadClient], result: RoundResult) -> None:
    """Compare what clients were shown with the database file (the server is dead)."""
    sent = {nonce for c in load for nonce in c.sent}
    result.integrity = scalar(db, "pragma integrity_check")
    stored = {
        row[0]: (row[1], row[2], row[3])
        for row in rows(
            db,
            "select id, room, nonce, message from messages where nonce like ?",
            f"s{result.seed}c%",
        )
    }
    result.duplicates = scalar(
        db,
        "select count(*) from (select room, nonce from messages where nonce is not null "
        "group by room, nonce having count(*) > 1)",
    )
    result.stored = len(stored)
    result.phantoms = sum(1 for _room, nonce, _body in stored.values() if nonce not in sent)
    for client in load:
        result.received += len(client.seen)
        for msg_id, shown in client.seen.items():
            if stored.get(msg_id) != shown:
                result.lost.append((client.name, msg_id, shown, stored.get(msg_id)))


async def retry_unacked(server: ServerProcess, load: list[LoadClient], result: RoundResult) -> None:
    """Send every unacknowledged message again with its nonce, as a client retry would."""
    async with aiohttp.ClientSession() as session:
        for client in load:
            pending = [n for n in client.sent if n not in client.acked]
            if not pending:
                continue
            ws = await session.ws_connect(f"{server.url}?room={client.room}")
            for nonce in pending:
                await ws.send_str(json.dumps({"Message": client.sent[nonce], "Nonce": nonce}))
            answered: set[str] = set()
            async with asyncio.timeout(20):
                async for msg in ws:
                    frame = json.loads(msg.data)
                    if frame.get("Type") == "Chat" and frame.get("Nonce") in pending:
                        answered.add(frame["Nonce"])
                        if len(answered) == len(pending):
                            break
            await ws.close()
            result.retried += len(pending)
    result.retry_duplicates = scalar(
        server.db,
        "select count(*) from (select room, nonce from messages where nonce like ? "
        "group by room, nonce having count(*) > 1)",
        f"s{result.seed}c%",
    )


async def crash_round(
    server: ServerProcess,
    seed: int,
    *,
    clients: int = 20,
    rooms: int = 10,
    rate: float = 1000.0,
    kill_range: tuple[float, float] = (0.1, 0.6),
    retry: bool = True,
) -> RoundResult:
    """One round against a running ``server``; it is running again (restarted) afterwards."""
    load, kill_after = await load_and_kill(
        server, seed, clients=clients, rooms=rooms, rate=rate, kill_range=kill_range
    )
    result = RoundResult(seed=seed, kill_after=kill_after)
    result.sent = sum(len(c.sent) for c in load)
    check_log(server.db, load, result)
    result.restart_seconds = server.start().started_in
    result.stale = scalar(server.db, "select count(*) from websocket_connections")
    if retry:
        await retry_unacked(server, load, result)
    return result


async def run_rounds(
    rounds: int, first_seed: int, workdir: Path, **kwargs: Any
) -> list[RoundResult]:
    server = ServerProcess(workdir / "crash.db")  # no rate limit, no heartbeat
    server.start()
    results = []
    try:
        for seed in range(first_seed, first_seed + rounds):
            result = await crash_round(server, seed, **kwargs)
            print(result.line(), flush=True)
            results.append(result)
    finally:
        server.kill()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0, help="first seed")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=1000.0, help="messages/s in total")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = asyncio.run(
            run_rounds(args.rounds, args.seed, Path(tmp), clients=args.clients, rate=args.rate)
        )
    bad = [r for r in results if not r.ok]
    sent = sum(r.sent for r in results)
    restarts = sorted(r.restart_seconds for r in results)
    print(
        f"{len(results) - len(bad)}/{len(results)} rounds passed; {sent} messages sent, "
        f"{sum(r.stored for r in results)} stored before the kills, "
        f"{sum(len(r.lost) for r in results)} lost, "
        f"{sum(r.duplicates + r.retry_duplicates for r in results)} duplicates; "
        f"restart median {restarts[len(restarts) // 2]:.2f}s, max {restarts[-1]:.2f}s"
    )
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
