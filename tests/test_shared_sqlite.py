"""Two real `chatlog serve` processes on one SQLite file behave as one server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp

from tests.backends import scalar
from tests.helpers import ServerProcess, eventually, run_cli
from tests.wsclients import ChatClient

#: Quick heartbeats, so a killed process is swept within a second.
NODE_FLAGS = ("--node-heartbeat", "0.2", "--node-timeout", "3")


def two_servers(db: Path) -> tuple[ServerProcess, ServerProcess]:
    first = ServerProcess(db, *NODE_FLAGS, log=db.with_suffix(".a.log"))
    second = ServerProcess(db, *NODE_FLAGS, log=db.with_suffix(".b.log"))
    return first, second


async def test_concurrent_senders_on_two_processes_see_one_order(tmp_path: Path) -> None:
    """Clients of both processes receive every message of the room in the same ID order,
    with chatlog broadcast's in it too, and a resume on either process replays that order."""
    db = tmp_path / "shared.db"
    first, second = two_servers(db)
    with first, second:
        async with aiohttp.ClientSession() as session:
            a1, a2 = [await ChatClient.connect(session, first.url) for _ in range(2)]
            b1, b2 = [await ChatClient.connect(session, second.url) for _ in range(2)]

            async def send(client: ChatClient, tag: str) -> None:
                for i in range(60):
                    await client.say(f"{tag}{i}")
                    if i % 10 == 0:
                        await asyncio.sleep(0.002)

            cli = asyncio.to_thread(run_cli, "broadcast", "--db", str(db), "--room", "main", "mid")
            *_, printed = await asyncio.gather(send(a1, "a"), send(b1, "b"), cli)
            assert printed.exit_code == 0, printed.output
            seen = [[f["ID"] for f in await c.chats(121)] for c in (a1, a2, b1, b2)]
            assert seen[0] == sorted(seen[0]) and len(set(seen[0])) == 121
            assert all(ids == seen[0] for ids in seen)
            for server in (first, second):
                late = await ChatClient.connect(session, server.url + "?since=0")
                assert [f["ID"] for f in await late.chats(121)] == seen[0]


async def test_user_list_is_shared_and_a_killed_process_is_swept(tmp_path: Path) -> None:
    """Each process's sockets see the other's users; after kill -9 of one, the other sweeps
    its rows and tells its sockets."""
    db = tmp_path / "presence.db"
    first, second = two_servers(db)
    with first, second:
        async with aiohttp.ClientSession() as session:
            alice = await ChatClient.connect(session, first.url)
            await alice.alias("alice")
            bob = await ChatClient.connect(session, second.url)
            assert bob.users == [{"User": "alice"}]
            await bob.alias("bob")
            await alice.until_users("alice", "bob")
            carol = await ChatClient.connect(session, first.url)
            await carol.alias("carol")
            await bob.until_users("alice", "bob", "carol")
            first.kill()
            await bob.until_users("bob")
            await eventually(lambda: scalar(db, "select count(*) from websocket_connections") == 1)
            assert scalar(db, "select count(*) from nodes") == 1
