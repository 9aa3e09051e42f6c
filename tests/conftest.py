"""Fixtures: a real aiohttp server on a loopback port over a fresh log, on SQLite and PostgreSQL.

``backend`` is a fresh, empty log: a SQLite file in the test's temp dir, or a database of its
own on the PostgreSQL server named by CHATLOG_TEST_POSTGRES_URL, dropped afterwards (without
one those runs skip; under CI=true they fail). ``settings``, ``start``, ``server``, ``connect``
and ``served`` build on it, so a test that uses any of them runs once per backend, unless

* it asks for ``db_path``: it reads the SQLite file, so it runs on SQLite only; or
* it (or its module) is marked ``@pytest.mark.backends("sqlite")`` or ``("postgres")``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer

from chatlog.settings import Settings
from tests.backends import BACKENDS, Backend, ServedLog, ServedLogs, open_backend
from tests.helpers import Start, start_server
from tests.wsclients import ChatClient, Connect, ws_url


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "backends(*kinds): run on these backends only ('sqlite', 'postgres')"
    )


def _kinds(node: Any, fixturenames: list[str]) -> tuple[str, ...]:
    marker = node.get_closest_marker("backends")
    if marker is not None:
        return tuple(marker.args)
    return ("sqlite",) if "db_path" in fixturenames else BACKENDS


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    kinds = _kinds(metafunc.definition, metafunc.fixturenames)
    if len(kinds) > 1:  # one backend: no parameter, so the test keeps its plain name
        params = [pytest.param(k, marks=[pytest.mark.postgres] * (k == "postgres")) for k in kinds]
        metafunc.parametrize("backend", params, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Backend]:
    """A fresh, empty log on this run's backend."""
    kind = getattr(request, "param", None) or _kinds(request.node, request.fixturenames)[0]
    with open_backend(kind, tmp_path) as opened:
        yield opened


@pytest.fixture
def db_path(backend: Backend) -> Path:
    """The SQLite file of the log (asking for it makes the test a SQLite-only one)."""
    if backend.kind != "sqlite":
        raise pytest.UsageError("db_path is the SQLite file; this test runs on PostgreSQL")
    return backend.path


@pytest.fixture
def settings(backend: Backend) -> Settings:
    return backend.settings()


@pytest.fixture
async def start(settings: Settings) -> AsyncIterator[Start]:
    """Start a server on the test's log with some settings changed; all stop after the test."""
    servers: list[TestServer] = []

    async def _start(runner_kwargs: dict[str, Any] | None = None, **changes: Any) -> TestServer:
        server = await start_server(settings.replace(**changes), **(runner_kwargs or {}))
        servers.append(server)
        return server

    yield _start
    for server in reversed(servers):
        await server.close()


@pytest.fixture
async def server(start: Start) -> TestServer:
    return await start()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def connect(server: TestServer, session: aiohttp.ClientSession) -> Connect:
    """Open a chat client on the test server: ``await connect(room="r", since=5)``."""

    async def _connect(path: str = "/ws", **query: Any) -> ChatClient:
        return await ChatClient.connect(session, ws_url(server, path, **query))

    return _connect


@pytest.fixture(scope="module")
def served_logs(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedLogs]:
    """The module's served logs, one per backend; ``SERVED_ROUNDS`` in the module sets their
    length (8 rounds by default)."""
    logs = ServedLogs(
        tmp_path_factory.mktemp("served"), getattr(request.module, "SERVED_ROUNDS", 8)
    )
    try:
        yield logs
    finally:
        logs.close()


@pytest.fixture
def served(backend: Backend, served_logs: ServedLogs) -> ServedLog:
    """A log the real server wrote over real sockets, on this run's backend (shared by the
    module: tests must not change it)."""
    return served_logs.get(backend.kind)
