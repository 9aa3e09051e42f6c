"""Storage faults: a full disk (a real 3 MiB tmpfs) and a read-only database (libfiu EROFS).

Senders get an Error frame ``store-failed`` and no Chat frame for a message that was not
stored, nobody else is shown it, the server keeps serving History and resumes, and writes
work again once the fault is gone; a retry with the same Nonce is then stored once.
"""

from __future__ import annotations

import asyncio
import errno
import json
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from chatlog.settings import Settings
from tests.backends import rows
from tests.helpers import ServerProcess, skip_or_fail, start_server
from tests.wsclients import ChatClient, b64


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 3 MiB tmpfs, mounted for this test only (needs root, as on the CI machine)."""
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True
    )
    if done.returncode != 0:
        skip_or_fail(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the file system is full; return it (delete it to free the space)."""
    filler = directory / "filler"
    with filler.open("wb", buffering=0) as f:
        for _ in range(100_000):
            try:
                f.write(b"\0" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
        for _ in range(4096):  # the last partial page, byte by byte
            try:
                f.write(b"\0")
            except OSError:
                break
    return filler


async def outcome(client: ChatClient, nonce: str, timeout: float = 10.0) -> str:
    """``"stored"`` (Chat frame with this nonce) or the Error code the sender got."""
    async with asyncio.timeout(timeout):
        while True:
            frame = await client.next()
            if frame.get("Type") == "Chat" and frame.get("Nonce") == nonce:
                return "stored"
            if frame.get("Type") == "Error":
                return str(frame["Code"])


async def send(client: ChatClient, text: str) -> str:
    await client.ws.send_str(json.dumps({"Message": b64(text), "Nonce": text}))
    return await outcome(client, text)


def stored_nonces(db: str | Path) -> list[str]:
    return [row[0] for row in rows(db, "select nonce from messages order by id")]


async def reads_still_work(
    session: aiohttp.ClientSession, url: str, reader: ChatClient, acked: list[str]
) -> None:
    """History on a live socket and a resume on a new one both answer from the log, with
    exactly the messages whose senders were told they were stored."""
    await reader.ws.send_str(json.dumps({"History": {"Limit": 50}}))
    history = await reader.recv("History")
    assert [f["Nonce"] for f in history["Messages"]] == acked
    late = await ChatClient.connect(session, f"{url}?since=0")
    backlog = [(await late.recv("Chat"))["Nonce"] for _ in acked]
    assert backlog == acked
    assert (await late.recv("Resumed"))["Complete"] is True
    await late.close()


async def fault_then_recover(
    session: aiohttp.ClientSession,
    url: str,
    db: str | Path,
    inject: Callable[[], Any],
    clear: Callable[[], Any],
) -> dict[str, Any]:
    writer = await ChatClient.connect(session, url)
    reader = await ChatClient.connect(session, url)
    assert await send(writer, "before") == "stored"
    inject()
    outcomes = {f"during {i}": await send(writer, f"during {i}") for i in range(20)}
    failed = [n for n, result in outcomes.items() if result != "stored"]
    assert failed, "the fault never reached a write"
    assert {outcomes[n] for n in failed} == {"store-failed"}
    # A full disk can still take a few commits: a WAL that a checkpoint let start over is
    # rewritten in blocks it already has. Those were acknowledged, so they must be readable.
    acked = ["before"] + [n for n, result in outcomes.items() if result == "stored"]
    await reads_still_work(session, url, reader, acked)
    stored = set(stored_nonces(db))
    assert not stored & set(failed), "a refused message is in the log"
    shown = {f.get("Nonce") for f in reader.seen if f.get("Type") == "Chat"}
    assert not shown & set(failed), "a refused message was shown to another client"
    cleared = time.monotonic()
    clear()
    for _ in range(200):  # poll: the first write after the fault may still fail once
        if await send(writer, "after") == "stored":
            break
        await asyncio.sleep(0.05)
    recovered = time.monotonic() - cleared
    for nonce in failed:  # the client retries what was refused, with the same nonce
        assert await send(writer, nonce) == "stored"
    nonces = stored_nonces(db)
    assert len(nonces) == len(set(nonces)) and set(failed) <= set(nonces)
    assert rows(db, "pragma integrity_check") == [("ok",)]
    return {"failed": len(failed), "tried": len(outcomes), "recovered_s": recovered}


async def test_disk_full_nacks_writes_serves_reads_and_recovers(
    tiny_disk: Path, session: aiohttp.ClientSession
) -> None:
    """Disk full: store-failed, no Chat for it, reads served, writes back once space returns."""
    db = tiny_disk / "chat.db"
    server = await start_server(Settings(db=str(db), heartbeat=0, rate=0))
    filler: list[Path] = []
    try:
        figures = await fault_then_recover(
            session,
            str(server.make_url("/ws")),
            db,
            inject=lambda: filler.append(fill(tiny_disk)),
            clear=lambda: filler[0].unlink(),
        )
    finally:
        await server.close()
    print(f"disk full: {figures}")


async def test_read_only_database_nacks_writes_and_recovers(
    tmp_path: Path, session: aiohttp.ClientSession
) -> None:
    """Writes failing with EROFS (libfiu on pwrite): store-failed, reads served, recovery."""
    if shutil.which("fiu-run") is None or shutil.which("fiu-ctrl") is None:
        skip_or_fail("fiu-utils is not installed (apt-get install fiu-utils)")
    server = ServerProcess(tmp_path / "ro.db", prefix=("fiu-run", "-x")).start()

    def fiu(command: str) -> None:
        subprocess.run(["fiu-ctrl", "-c", command, str(server.pid)], check=True, timeout=10)

    try:
        figures = await fault_then_recover(
            session,
            server.url,
            server.db,
            inject=lambda: fiu(f"enable name=posix/io/rw/pwrite,failinfo={errno.EROFS}"),
            clear=lambda: fiu("disable name=posix/io/rw/pwrite"),
        )
        assert server.proc is not None and server.proc.poll() is None, "the server died"
    finally:
        server.kill()
    print(f"read-only: {figures}")
