"""The report of ``chatlog bench``: medians over repeated runs, ratios, the table and its notes."""

from __future__ import annotations

import math
import statistics
from typing import Any

from chatlog.bench.loadgen import Config


def _median(values: list[Any]) -> Any:
    numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
    if len(numbers) != len(values) or not numbers:
        return values[0] if values else None
    return statistics.median(numbers)


#: Counters summed over repeated runs (losses are never hidden in a median).
SUMMED = (
    "lost",
    "duplicates",
    "out_of_order",
    "refused",
    "retries",
    "retries_answered",
    "retries_same_id",
    "distinct_nonces",
    "stored_rows",
)


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-field medians over repeated runs; counters are summed, and "stored once" holds
    only if it held in every run."""
    out: dict[str, Any] = {}
    for key, first in runs[0].items():
        values = [r[key] for r in runs]
        if key in SUMMED:
            out[key] = None if None in values else sum(values)
        elif key == "stored_once":
            out[key] = None if None in values else all(values)
        elif key == "client_saturated":
            out[key] = any(values)
        elif isinstance(first, dict) and key == "latency_ms":
            out[key] = {k: _median([v[k] for v in values]) for k in first}
        elif isinstance(first, dict):
            merged: dict[str, int] = {}
            for value in values:
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
            out[key] = merged
        else:
            out[key] = _median(values)
    return out


ROWS: tuple[tuple[str, str, str], ...] = (
    ("msgs/s accepted", "msgs_per_s", "{:,.0f}"),
    ("deliveries/s", "deliveries_per_s", "{:,.0f}"),
    ("latency p50 ms", "latency_ms.p50", "{:.2f}"),
    ("latency p90 ms", "latency_ms.p90", "{:.2f}"),
    ("latency p99 ms", "latency_ms.p99", "{:.2f}"),
    ("latency max ms", "latency_ms.max", "{:.2f}"),
    ("server CPU µs/delivery", "server_cpu_us_per_delivery", "{:.2f}"),
    ("server CPU (cores)", "server_cpu_util", "{:.2f}"),
    ("server peak RSS MiB", "server_peak_rss_mib", "{:.1f}"),
    ("server RSS KiB/connection", "server_rss_kib_per_connection", "{:.1f}"),
    ("client CPU (busiest proc)", "client_cpu_busy", "{:.2f}"),
    ("rows per commit", "rows_per_commit", "{:.1f}"),
    ("commit ms (mean)", "commit_ms", "{:.2f}"),
    ("lost", "lost", "{}"),
    ("duplicates", "duplicates", "{}"),
    ("out of order", "out_of_order", "{}"),
    ("refused", "refused", "{}"),
)
#: Shown when the run retried (--retry-share).
RETRY_ROWS: tuple[tuple[str, str, str], ...] = (
    ("retries sent", "retries", "{}"),
    ("retries answered", "retries_answered", "{}"),
    ("retries answered, seen ID", "retries_same_id", "{}"),
)
#: Ratios worth reporting (chatlog / baseline); latency ratios: lower is better.
RATIOS = (
    "msgs_per_s",
    "deliveries_per_s",
    "latency_ms.p50",
    "latency_ms.p99",
    "server_cpu_us_per_delivery",
)


def ratios_of(summary: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """``summary / reference`` for each of :data:`RATIOS` both have a non-zero number for."""
    ratios = {}
    for path in RATIOS:
        a, b = _get(summary, path), _get(reference, path)
        if isinstance(a, int | float) and isinstance(b, int | float) and b:
            ratios[path] = a / b
    return ratios


def _get(result: dict[str, Any], path: str) -> Any:
    value: Any = result
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


def _fmt(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def render(
    cfg: Config,
    summaries: dict[str, dict[str, Any]],
    ratios: dict[str, Any],
    vs_sqlite: dict[str, dict[str, Any]] | None = None,
) -> str:
    """The report as a plain text table."""
    vs_sqlite = vs_sqlite or {}
    names = list(summaries)
    lines = [
        f"clients={cfg.clients} senders={cfg.senders} rooms={cfg.rooms} size={cfg.size} B "
        f"rate={'unlimited' if not cfg.rate else f'{cfg.rate:g}/s'} "
        + (f"messages={cfg.messages}" if cfg.messages else f"duration={cfg.duration:g} s")
        + f" procs={cfg.procs} window={cfg.inflight() if not cfg.rate else '-'}"
        + (" nonce" if cfg.nonce else "")
        + (f" retry-share={cfg.retry_share:g}" if cfg.retry_share else "")
    ]
    header = ["", *names] + (["ratio"] if ratios else [])
    header += [f"{name}/sqlite" for name in vs_sqlite]
    rows = [header]
    for label, path, fmt in ROWS + (RETRY_ROWS if cfg.retry_share else ()):
        row = [label] + [_fmt(fmt, _get(summaries[n], path)) for n in names]
        if ratios:
            row.append(_fmt("{:.2f}x", ratios.get(path)))
        row += [_fmt("{:.2f}x", versus.get(path)) for versus in vs_sqlite.values()]
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    for row in rows:
        lines.append(
            "  ".join(
                c.ljust(w) if i == 0 else c.rjust(w)
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            )
        )
    return "\n".join(lines)


def notes_for(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Warnings the reader must see next to the figures."""
    notes = []
    for name, s in summaries.items():
        if s["client_saturated"]:
            notes.append(
                f"{name}: a client process was saturated (CPU {s['client_cpu_busy']:.2f}); "
                "the figures are the load generator's limit, not the server's: try --procs"
            )
        if s["lost"] or s["duplicates"] or s["out_of_order"]:
            notes.append(
                f"{name}: {s['lost']} lost, {s['duplicates']} duplicated, "
                f"{s['out_of_order']} out of order"
            )
        if s["retries"] and s["retries_same_id"] != s["retries"]:
            notes.append(
                f"{name}: of {s['retries']} retries, {s['retries_answered']} were answered, "
                f"{s['retries_same_id']} with the ID their original was stored under"
            )
        if s["server_closes"]:
            notes.append(f"{name}: server closed clients with codes {s['server_closes']}")
        if rate_limited(s):
            notes.append(f"{name}: {RATE_LIMITED}")
    return notes


#: What to do when the target's per-connection rate limit got in the way.
RATE_LIMITED = (
    "the server refused frames or closed clients with 1008 (its per-connection rate limit), "
    "so these are not the server's figures: restart it with `chatlog serve --rate 0` "
    "or offer less load with the bench's --rate"
)


def rate_limited(summary: dict[str, Any]) -> bool:
    """Whether the server's rate limit refused frames or closed clients in these runs."""
    return bool(summary["refused"]) or "1008" in summary["server_closes"]


def failures(summaries: dict[str, dict[str, Any]]) -> str | None:
    """One line when a target lost, repeated or reordered messages (the bench then fails)."""
    for name, s in summaries.items():
        if s["lost"] or s["duplicates"] or s["out_of_order"]:
            what = (
                f"{name}: {s['lost']} messages lost, {s['duplicates']} duplicated, "
                f"{s['out_of_order']} out of order"
            )
            if rate_limited(s):
                return f"{what}; its rate limit closed clients: restart it with --rate 0"
            return f"{what}; see the notes above"
    return None


def stored_once_line(summary: dict[str, Any]) -> str | None:
    """Whether each distinct nonce became exactly one row (spawned SQLite servers only)."""
    if summary.get("stored_once") is None:
        return None
    verdict = "yes" if summary["stored_once"] else "NO"
    rows, nonces = summary["stored_rows"], summary["distinct_nonces"]
    return f"stored once: {verdict} ({rows} rows for {nonces} distinct nonces)"


def above_bare(
    summary: dict[str, Any], bare: dict[str, Any], fsync: dict[str, Any]
) -> dict[str, float | None]:
    """What chatlog adds to the bare server's latency at p50 and p99, in ms and as a multiple
    of the disk's own ``write + fdatasync`` at the same quantile (its floor: one commit)."""
    out: dict[str, float | None] = {}
    for q in ("p50", "p99"):
        ours, theirs = _get(summary, f"latency_ms.{q}"), _get(bare, f"latency_ms.{q}")
        added = ours - theirs if isinstance(ours, float) and isinstance(theirs, float) else None
        out[f"{q}_ms"] = added
        out[f"{q}_x_fsync"] = None if added is None or not fsync[q] else added / fsync[q]
    return out


def disk_lines(
    fsync: dict[str, Any], added: dict[str, Any] | None, commit: dict[str, Any] | None = None
) -> str:
    """The disk's commit latency, chatlog's latency above the bare server against it, and
    one commit of the writer's alone on the run's log."""
    lines = [
        f"disk write+fdatasync ms: p50 {fsync['p50']:.3f}  p99 {fsync['p99']:.3f}  "
        f"max {fsync['max']:.3f}  ({fsync['rounds']:.0f} rounds per run)"
    ]
    if added is not None:
        parts = [
            f"{q} +{_fmt('{:.2f}', added[f'{q}_ms'])} ms = "
            f"{_fmt('{:.1f}', added[f'{q}_x_fsync'])}x the disk's {q}"
            for q in ("p50", "p99")
        ]
        lines.append("chatlog above baseline: " + ";  ".join(parts))
    if commit is not None:
        parts = [
            f"{q} {commit[q]:.3f} ms = {commit[q] / fsync[q]:.1f}x the disk's"
            for q in ("p50", "p99")
        ]
        lines.append("one commit alone, on the run's log: " + ";  ".join(parts))
    return "\n".join(lines)
