"""PostgreSQL targets for ``chatlog bench``: N servers sharing one temporary database.

The database (``chatlog_bench_<random>``) is created on the given PostgreSQL server for one
measured run and dropped (``WITH (FORCE)``) when its servers stop, so runs never see each
other's rows. CPU and memory are summed over the servers.
"""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

from chatlog.bench.spawn import Launch, ServerProbe, Spawned, chatlog_argv, free_port
from chatlog.log.open import create_database, drop_database


class Cluster:
    """``count`` chatlog servers on a fresh PostgreSQL database; ``urls`` are their sockets."""

    def __init__(
        self,
        server: str,
        count: int,
        synchronous: str,
        server_args: tuple[str, ...],
        workdir: Path,
        env: dict[str, str],
    ) -> None:
        self.server = server
        self.database = f"chatlog_bench_{secrets.token_hex(6)}"
        db_url = asyncio.run(create_database(server, self.database))
        self.servers: list[Spawned] = []
        for i in range(count):
            port = free_port()
            argv = chatlog_argv(port, db_url, synchronous, server_args)
            self.servers.append(Spawned(argv, port, workdir / f"postgres-{i}.log", env))

    @property
    def urls(self) -> tuple[str, ...]:
        return tuple(s.url for s in self.servers)

    def wait_ready(self) -> None:
        for server in self.servers:
            server.wait_ready(60.0)

    def stop(self) -> None:
        for server in self.servers:
            server.stop()
        asyncio.run(drop_database(self.server, self.database))


class ProbeGroup(ServerProbe):
    """CPU time and memory summed over several server processes."""

    def __init__(self, pids: list[int]) -> None:
        self.probes = [ServerProbe(pid) for pid in pids]
        self.pid = pids[0]

    def cpu(self) -> float:
        return sum(p.cpu() for p in self.probes)

    def rss(self) -> int:
        return sum(p.rss() for p in self.probes)

    def peak_rss(self) -> int:
        return sum(p.peak_rss() for p in self.probes)


def spawn_cluster(
    server: str,
    count: int,
    synchronous: str,
    server_args: tuple[str, ...],
    workdir: Path,
    env: dict[str, str],
) -> Launch:
    """A bench target: the cluster, its servers' URLs and a probe over all its processes."""
    cluster = Cluster(server, count, synchronous, server_args, workdir, env)
    probe = ProbeGroup([s.proc.pid for s in cluster.servers])
    return Launch(cluster.urls[0], cluster, probe, cluster.urls)
