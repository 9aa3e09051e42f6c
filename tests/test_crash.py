"""SIGKILL under load: what any client was shown is in the log, once, and the file is intact.

Twenty short rounds with different seeds (``CHATLOG_CRASH_ROUNDS`` runs more); each loads a
real ``chatlog serve`` subprocess at about 1,000 messages/s from 20 clients, kills it at a
seeded random moment, checks the database and restarts it for the next round. The same
harness runs from the command line: ``python -m tests.crash_harness --rounds 200``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.crash_harness import crash_round
from tests.helpers import ServerProcess

ROUNDS = int(os.environ.get("CHATLOG_CRASH_ROUNDS", "20"))


@pytest.fixture(scope="module")
def crash_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("crash") / "crash.db") as server:
        yield server


@pytest.mark.parametrize("seed", range(ROUNDS))
async def test_sigkill_round_loses_and_duplicates_nothing(
    crash_server: ServerProcess, seed: int
) -> None:
    """Kill -9 at a random moment: 0 lost, 0 duplicates (also on retry), integrity ok, 0 stale."""
    result = await crash_round(crash_server, seed)
    print(result.line())
    assert result.received > 0, "the load never got going"
    assert result.lost == []
    assert (result.duplicates, result.retry_duplicates, result.phantoms) == (0, 0, 0)
    assert result.integrity == "ok"
    assert result.stale == 0
    assert result.ok
