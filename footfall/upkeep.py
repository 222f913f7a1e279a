"""Periodic work while footfall serves, as a table of tasks (GoatCounter's cron): name, period, function.

Owns: collection upkeep (websites, salts, idle visits, rate buckets), the page's password reload, the login limiter's
sweep, rollup refreshes paced by the ingest rate, per-site retention, and handing freed memory back to the OS. Imports
collector, footfall.auth, footfall.ops, footfall.rollups and footfall.summary.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import logging
import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from collector import DAY_SECONDS, Collection
from footfall.auth import PageAuth
from footfall.ops import ORPHAN_DELETES, prune_statement, restart_visits, visits_cut_by_prune
from footfall.rollups import ROLLUP_BUSY_EVENTS_PER_SECOND, ROLLUP_REFRESH_SECONDS, drop_pruned_rollups, hours_cut_by_prune
from footfall.summary import SummaryReader

log = logging.getLogger("footfall")

#: How often the scheduler looks at its table, in seconds (the shortest period below).
TICK_SECONDS = 2.0
#: Per-site retention (website.retention_days) is applied this often, in seconds.
RETENTION_INTERVAL_SECONDS = DAY_SECONDS


#: glibc's malloc_trim, where the C library has one (musl and macOS have none: there the task does nothing).
_MALLOC_TRIM = getattr(ctypes.CDLL(None), "malloc_trim", None)


def release_free_memory() -> None:
    """Give the heap pages that are free back to the OS (glibc's ``malloc_trim(0)``; ~1 ms).

    glibc keeps what a burst freed (decoded batches, a rollup refresh's counts) mapped for reuse, fragmented between
    what is still live, so a server that has answered 48 maximal batches stayed at 195 MB with 40 MB of it in use.
    """
    if _MALLOC_TRIM is not None:
        _MALLOC_TRIM(0)


class Task(NamedTuple):
    """One periodic job: a name for the log, how often it runs (seconds), and what it runs."""

    name: str
    period: float
    run: Callable[[], Awaitable[object]]


class Upkeep:
    """Runs each task when its period has passed; a failing task logs one line and is tried again next round."""

    def __init__(self, collection: Collection, summary: SummaryReader, auth: PageAuth) -> None:
        self.collection = collection
        self.summary = summary
        self.auth = auth
        self._rollup_pause = ROLLUP_REFRESH_SECONDS
        self._committed_seen = (time.monotonic(), 0)  # (when, writer.committed then): the ingest rate between rounds
        self.tasks = (
            Task("collection", TICK_SECONDS, collection.upkeep),
            Task("password", TICK_SECONDS, lambda: auth.load(collection.read_setting)),
            Task("login-limiter", TICK_SECONDS, self.sweep_login_limiter),
            Task("rollups", TICK_SECONDS, self.refresh_rollups_when_quiet),
            Task("retention", RETENTION_INTERVAL_SECONDS, lambda: apply_retention(collection, summary, collection.clock())),
            Task("memory", TICK_SECONDS, self.release_memory),
        )
        self._last_run = {task.name: 0.0 for task in self.tasks}
        self._loop: asyncio.Task[None] | None = None
        self._rollups_at = 0.0
        self._committed_last_tick = 0
        self._released_at = (0, 0)  # (writer.committed, summary.runs) when memory was last released

    def start(self) -> None:
        """Start the scheduler task; every task first runs at its first tick."""
        self._loop = asyncio.create_task(self._run_forever(), name="footfall-upkeep")

    async def close(self) -> None:
        """Stop the scheduler, waiting for the task that runs now."""
        if self._loop is not None:
            self._loop.cancel()
            try:
                await self._loop
            except asyncio.CancelledError:
                pass
            self._loop = None

    async def run_due(self) -> None:
        """One round: every task whose period has passed (tests call this instead of waiting)."""
        for task in self.tasks:
            now = time.monotonic()
            if now - self._last_run[task.name] < task.period:
                continue
            self._last_run[task.name] = now
            try:
                await task.run()
            except Exception as exc:  # noqa: BLE001 - upkeep must never stop; the next round retries
                log.warning("event=upkeep-failed task=%s error=%r", task.name, str(exc))

    async def _run_forever(self) -> None:
        while True:
            await asyncio.sleep(TICK_SECONDS)
            await self.run_due()

    async def sweep_login_limiter(self) -> None:
        """Forget login clients whose attempts are back in full, so the limiter holds only recent ones."""
        self.auth.login_limiter.sweep(self.collection.clock())

    async def release_memory(self) -> None:
        """After new work (events written, summaries or refreshes run), hand what it freed back to the OS.

        The summary connection's page cache (up to SUMMARY_CACHE_KIB) serves one summary's repeated reads; between
        summaries it would only hold memory (a commit by the writer makes SQLite drop it at the next read anyway), so
        it is emptied here, then glibc gives the free pages back.
        """
        committed = self.collection.writer.committed
        busy, self._committed_last_tick = committed != self._committed_last_tick, committed
        seen = (committed, self.summary.runs)
        if busy or seen == self._released_at:
            return
        if self.summary.runs != self._released_at[1]:
            await self.summary.run(lambda conn: conn.execute("PRAGMA shrink_memory"))
        self.collection.forget_memos()
        gc.collect()
        self._released_at = (self.collection.writer.committed, self.summary.runs)
        release_free_memory()

    async def refresh_rollups_when_quiet(self) -> None:
        """Refresh the rollups, unless events arrive faster than ROLLUP_BUSY_EVENTS_PER_SECOND.

        Under a heavy load the background refresh waits (it recomputes the current hour whole, and its read snapshot would
        hold the WAL back); the page refreshes before it reads in any case. A refresh takes at most ~5% of the time.
        """
        clock_now, committed = time.monotonic(), self.collection.writer.committed
        rate = (committed - self._committed_seen[1]) / max(clock_now - self._committed_seen[0], 1e-3)
        self._committed_seen = (clock_now, committed)
        if clock_now - self._rollups_at < self._rollup_pause or rate > ROLLUP_BUSY_EVENTS_PER_SECOND:
            return
        started = time.monotonic()
        try:
            await self.summary.refresh()
        finally:
            self._rollups_at = time.monotonic()
            self._rollup_pause = max(ROLLUP_REFRESH_SECONDS, 20 * (self._rollups_at - started))


async def apply_retention(collection: Collection, summary: SummaryReader, now: float) -> int:
    """Delete events past each site's retention_days, one small transaction at a time between ingest commits."""
    assert collection.reader is not None
    sql = "SELECT website_key, retention_days FROM website WHERE retention_days IS NOT NULL"
    async with collection.reader.execute(sql) as cur:
        sites = await cur.fetchall()
    total = 0
    for website_key, days in sites:
        cutoff = int(now - days * DAY_SECONDS)
        repair = await summary.run(lambda conn: hours_cut_by_prune(conn, cutoff, website_key))  # noqa: B023
        cut = await summary.run(lambda conn: visits_cut_by_prune(conn, cutoff, website_key))  # noqa: B023
        statement = prune_statement(cutoff, website_key)
        while deleted := await collection.execute([statement]):
            total += deleted
        if cut:
            await collection.execute(restart_visits(cut))
        await summary.run(lambda conn: drop_pruned_rollups(conn, cutoff, website_key, repair))  # noqa: B023
    if total:
        await collection.execute([(sql, ()) for sql in ORPHAN_DELETES])
        log.info("event=retention deleted_events=%d", total)
    return total
