"""GET /metrics, /healthz and /readyz on a real server; structured log fields."""

from __future__ import annotations

import asyncio
import json
import logging
import re
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.log.migrate import head as head_revision
from chatlog.server.app import create_app
from chatlog.server.logs import JsonFormatter
from chatlog.settings import Settings
from tests.backends import rows
from tests.wsclients import Connect

# The endpoints read the SQLite file (readyz, WAL checkpoints); the rest is backend-neutral.
pytestmark = pytest.mark.backends("sqlite")


def _value(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    assert match, f"{name} is missing from /metrics"
    return float(match.group(1))


async def test_healthz_answers_while_the_process_is_up(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """/healthz is 200 with {"status": "ok"}."""
    async with session.get(server.make_url("/healthz")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ok"}


async def test_readyz_is_ready_on_a_migrated_writable_database(
    server: TestServer, session: aiohttp.ClientSession
) -> None:
    """/readyz is 200 and names the head revision when the writer can write."""
    async with session.get(server.make_url("/readyz")) as resp:
        assert resp.status == 200
        assert await resp.json() == {"status": "ready", "revision": head_revision()}


async def test_readyz_is_503_when_the_schema_is_not_at_head(
    server: TestServer, session: aiohttp.ClientSession, db_path: Path
) -> None:
    """/readyz is 503 "unmigrated" when the database's revision differs from the code's head."""
    rows(db_path, "UPDATE alembic_version SET version_num = '0001'")
    async with session.get(server.make_url("/readyz")) as resp:
        assert resp.status == 503
        body = await resp.json()
    assert body["status"] == "unmigrated" and body["revision"] == "0001"


async def test_metrics_count_connections_messages_deliveries_commits_errors_and_resumes(
    server: TestServer, session: aiohttp.ClientSession, connect: Connect
) -> None:
    """/metrics (Prometheus text) follows connections, messages, deliveries, commits, errors."""
    alice, bob = await connect(room="m"), await connect(room="m")
    await alice.say("hello")
    await bob.recv_chat("hello")
    await alice.ws.send_str("not json")
    await alice.recv("Error")
    carol = await connect(room="m", since=0)
    await carol.recv("Resumed")
    async with session.get(server.make_url("/metrics")) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = await resp.text()
    assert _value(text, "chatlog_connections") == 3
    assert _value(text, "chatlog_frames_in_total") == 2
    assert _value(text, "chatlog_messages_persisted_total") == 1
    assert _value(text, "chatlog_messages_out_total") == 1
    assert _value(text, "chatlog_deliveries_total") == 2
    assert _value(text, "chatlog_commit_batch_rows_count") == 1
    assert _value(text, "chatlog_commit_seconds_count") == 1
    assert _value(text, 'chatlog_errors_total{kind="invalid-json"}') == 1
    assert _value(text, "chatlog_resume_requests_total") == 1
    assert _value(text, "chatlog_resume_rows_replayed_total") == 1
    assert _value(text, "chatlog_fanout_queue_drops_total") == 0
    assert _value(text, "chatlog_slow_consumer_closes_total") == 0


async def test_metrics_show_background_wal_checkpoints(
    server: TestServer, session: aiohttp.ClientSession, connect: Connect
) -> None:
    """On SQLite a commit starts a background WAL checkpoint, which /metrics counts along
    with the WAL's length in pages; on an idle server the writer never checkpoints itself."""
    alice = await connect(room="w")
    await alice.say("checkpoint me")
    await alice.recv_chat("checkpoint me")
    for _ in range(200):  # the checkpoint runs on a thread after the commit: poll, bounded
        async with session.get(server.make_url("/metrics")) as resp:
            text = await resp.text()
        if _value(text, "chatlog_wal_checkpoints_total") >= 1:
            break
        await asyncio.sleep(0.01)
    assert _value(text, "chatlog_wal_checkpoints_total") >= 1
    assert _value(text, "chatlog_wal_pages") > 0
    assert _value(text, "chatlog_wal_writer_checkpoints_total") == 0


def test_each_app_has_its_own_registry(settings: Settings) -> None:
    """Two apps in one process register their metrics without clashing (no global registry)."""
    from chatlog.server.keys import METRICS

    first, second = create_app(settings), create_app(settings)
    assert first[METRICS].registry is not second[METRICS].registry
    assert b"chatlog_commit_seconds" in second[METRICS].exposition()


async def test_connection_and_error_log_lines_carry_ws_id_and_room(
    connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    """With --log-format json, connection and refused-frame lines have ws_id and room fields."""
    caplog.set_level(logging.INFO, logger="chatlog.server.connection")
    client = await connect(room="logs")
    await client.ws.send_str("{}")
    await client.recv("Error")
    lines = [json.loads(JsonFormatter().format(r)) for r in caplog.records]
    opened = [e for e in lines if "opened" in e["event"]]
    refused = [e for e in lines if "refused" in e["event"]]
    assert opened and refused
    for entry in (opened[0], refused[0]):
        assert entry["ws_id"] == client.ws_id
        assert entry["room"] == "logs"
