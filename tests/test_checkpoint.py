"""WAL checkpoints run beside the writer, not inside its commits, and the WAL stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from chatlog.log.model import NewMessage
from chatlog.log.open import opened
from chatlog.log.sqlite import checkpoint
from chatlog.log.sqlite.backend import SqliteBackend
from chatlog.log.writer import Writer
from chatlog.settings import database_url

PAGE = 4096
ROWS = 6000


def message(i: int) -> NewMessage:
    text = f"message {i} " + "x" * 200
    return NewMessage("main", "ws", "a", "aGk=", text, '{"Message":"aGk="}', {"Message": "aGk="})


async def test_commits_never_checkpoint_and_the_wal_stays_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer's connection has SQLite's automatic checkpoint off; background checkpoints
    run instead, and under writes that never pause the writer checkpoints itself once the WAL
    passes the limit, so the file stops growing. Every row is stored."""
    monkeypatch.setattr(checkpoint, "EVERY", 0.0)
    monkeypatch.setattr(checkpoint, "WAL_LIMIT", 64)
    path = tmp_path / "c.db"
    wal = Path(f"{path}-wal")
    sizes: list[int] = []
    async with opened(database_url(str(path))) as log:
        assert isinstance(log, SqliteBackend)
        writer = Writer(log, lambda _: None, lambda *_: None, batch_max=50)
        await writer.start()

        def wal_size() -> int:
            return wal.stat().st_size if wal.exists() else 0

        async def sample() -> None:
            while writer.rows < ROWS:
                sizes.append(wal_size())
                await asyncio.sleep(0)

        sampler = asyncio.create_task(sample())
        # Queue everything at once: the writer commits batch after batch without a pause, so
        # a background checkpoint never finds the WAL idle and cannot restart it alone.
        await asyncio.gather(*(writer.append(message(i)) for i in range(ROWS)))
        await sampler
        own = log.committer
        assert own is not None
        assert own.db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
        checkpoints = log.checkpoints
        assert checkpoints is not None, "a SQLite file must get background checkpoints"
        runs = checkpoints.runs
        await writer.close()
    assert runs > 0, "background checkpoints must have run"
    # 6,000 rows of ~260 bytes with three indexes: thousands of pages if never restarted.
    assert len(sizes) > 10
    assert max(sizes) < 600 * PAGE, f"the WAL grew to {max(sizes) // PAGE} pages"
    with sqlite3.connect(path) as conn:
        assert conn.execute("select count(*), max(id) from messages").fetchone() == (ROWS, ROWS)
        assert conn.execute("pragma integrity_check").fetchone() == ("ok",)


async def test_a_database_in_memory_keeps_sqlite_checkpoints() -> None:
    """take_over declines a database with no file (nothing to checkpoint from elsewhere)."""
    conn = sqlite3.connect(":memory:")
    assert checkpoint.take_over(conn) is None
    assert conn.execute("PRAGMA wal_autocheckpoint").fetchone() == (1000,)


def test_failing_checkpoints_warn_once_per_episode(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """While checkpoints fail (disk full, read-only) the log gets one warning, not one every
    0.2 s, and one line when they work again."""
    good = tmp_path / "ok.db"
    with contextlib.closing(sqlite3.connect(good)) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
    cp = checkpoint.Checkpointer(str(tmp_path / "missing" / "x.db"))
    with caplog.at_level("INFO", logger="chatlog.log.sqlite.checkpoint"):
        for _ in range(3):
            cp._checkpoint()
        cp.path = str(good)
        cp._checkpoint()
        cp._checkpoint()
    messages = [(r.levelname, r.getMessage().split(" (")[0]) for r in caplog.records]
    assert messages == [
        ("WARNING", "WAL checkpoints failing"),
        ("INFO", "WAL checkpoints work again"),
    ]
    assert cp.runs == 2
