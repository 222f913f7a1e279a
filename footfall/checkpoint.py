"""WAL checkpoints beside the writer, so that a commit never waits for one.

SQLite's autocheckpoint runs inside the COMMIT of the connection that pushed the WAL past ``wal_autocheckpoint`` pages:
on footfall's writer thread, which then copies a thousand pages into the database file (and syncs it) while every
request waiting for the next commit waits too. Under a steady /api/send load that pause was the p99: 13 ms where the
echo server's was 7, and 8 ms with checkpoints left out altogether. So the app gives the writer a Checkpointer: the
writer's connection does not checkpoint itself, and after each commit it calls ``after_commit()``, which starts a
PASSIVE checkpoint on a connection and thread of its own once the WAL holds as many frames not yet copied as SQLite
would have waited for. A PASSIVE checkpoint takes no lock a writer needs, so the writer goes on committing meanwhile.
The WAL can only start over once a checkpoint has copied all of it, and under load the writer adds frames while the
checkpoint runs; so the checkpointer goes on with what was committed meanwhile, in ever shorter rounds (a thousand
frames took 8-10 ms here, a few dozen well under one), until a round falls between two commits and copies the rest:
the writer's next commit then starts the WAL over from the beginning. Whatever the last round left (committed while
it ran), the writer copies itself, once, after its next commit: well under a millisecond.

How full the WAL is comes from its index (the ``-shm`` file), whose header SQLite documents as part of the file format
(https://sqlite.org/walformat.html, "The WAL-Index Header"): ``mxFrame``, the last valid frame, and ``nBackfill``, the
frames already copied into the database. Reading them is one ``pread`` of 100 bytes; when the file cannot be read the
checkpointer falls back to checkpointing after every commit.

Owns: Checkpointer (the thread, the connection and the trigger). Imports collector only; footfall.app creates one
unless ``wal_autocheckpoint`` is 0 (Litestream checkpoints then).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import sqlite3
import struct
import threading
import time

from collector import connect

log = logging.getLogger("footfall")

#: mxFrame (offset 16 of the first copy of the header) and nBackfill (offset 96: the first field after the header's two
#: 48-byte copies), 32-bit unsigned integers in the machine's own byte order (the wal-index is never shared between
#: machines).
_MX_FRAME = struct.Struct("=I")
_INDEX_HEADER_BYTES = 100

#: Seconds between two log lines about failed checkpoints (a full disk would fail every one).
_LOG_PAUSE_SECONDS = 60.0


#: Checkpoints in a row at most, each of the frames committed during the one before, until the whole WAL is copied.
CATCH_UP_ROUNDS = 3

#: How much the checkpoint thread defers to the others (its nice value, above the process's).
CHECKPOINT_NICENESS = 10


def _yield_to_requests() -> None:
    """Lower the calling thread's CPU priority (Linux sets a nice value per thread): on a one-core machine the copying
    then runs while the event loop waits, instead of beside requests. Elsewhere it does nothing."""
    try:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + CHECKPOINT_NICENESS)
    except (AttributeError, OSError):
        pass


class Checkpointer:
    """PASSIVE checkpoints of the database at ``path`` once ``pages`` WAL frames wait to be copied, one at a time, in a
    thread of their own; ``after_commit`` is called by the writer on the event loop."""

    def __init__(self, path: str, busy_timeout_ms: int, pages: int) -> None:
        self.path, self.busy_timeout_ms, self.pages = path, busy_timeout_ms, pages
        self.checkpoints = 0  #: checkpoints run since start
        self._thread = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="footfall-checkpoint", initializer=_yield_to_requests
        )
        self._conn: sqlite3.Connection | None = None
        self._index_fd: int | None = None
        self._running: asyncio.Future[None] | None = None
        self._last_error_log = 0.0

    def waiting_frames(self) -> int | None:
        """WAL frames not yet copied into the database (mxFrame - nBackfill of the wal-index header); None if unknown."""
        try:
            if self._index_fd is None:
                self._index_fd = os.open(f"{self.path}-shm", os.O_RDONLY)
            header = os.pread(self._index_fd, _INDEX_HEADER_BYTES, 0)
        except OSError:
            self._close_index()
            return None
        if len(header) < _INDEX_HEADER_BYTES:
            return None
        (last,), (copied,) = _MX_FRAME.unpack_from(header, 16), _MX_FRAME.unpack_from(header, 96)
        return max(last - copied, 0)

    def after_commit(self) -> bool:
        """Start a checkpoint if the WAL is full enough and none is running (never waits for it). True once one has
        ended with frames left to copy (committed during its last round): the writer then copies them itself."""
        if self._running is not None:
            if not self._running.done():
                return False
            self._running = None
            return self.waiting_frames() != 0  # (committed since its last round; unknown counts as some)
        waiting = self.waiting_frames()
        if waiting is None or waiting >= self.pages:
            self._running = asyncio.get_running_loop().run_in_executor(self._thread, self._checkpoint)
        return False

    def _checkpoint(self) -> None:
        """PASSIVE checkpoints until one has copied the whole WAL (a short one, of what was committed during the one
        before, usually fits between two commits), or CATCH_UP_ROUNDS of them."""
        try:
            if self._conn is None:
                self._conn = connect(self.path, self.busy_timeout_ms, True, 0)
            for _ in range(CATCH_UP_ROUNDS):
                busy, frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                self.checkpoints += 1
                if busy or copied >= frames:
                    return
        except sqlite3.Error as exc:  # the next commit tries again; the writer is not concerned
            now = time.monotonic()
            if now - self._last_error_log >= _LOG_PAUSE_SECONDS:
                self._last_error_log = now
                log.warning("event=checkpoint-failed error=%r", str(exc))

    async def close(self) -> None:
        """Wait for a checkpoint in flight, then close the connection and the thread."""
        if self._running is not None:
            await self._running
            self._running = None
        if self._conn is not None:
            await asyncio.get_running_loop().run_in_executor(self._thread, self._conn.close)
            self._conn = None
        self._thread.shutdown(wait=True)
        self._close_index()

    def _close_index(self) -> None:
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = None
