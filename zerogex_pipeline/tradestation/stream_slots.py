"""The concurrent option-stream cap (10 per user by the reference), shared by every process on the machine.

Dagster runs are separate processes, so an in-process semaphore cannot keep the user under the cap. Each
slot is a lock file ``<data_dir>/tradestation/option-streams-<client hash>/slot-<i>.lock``; holding an
exclusive ``flock`` on one of them holds the slot. The kernel drops the lock when the holder's file is
closed, including when the process dies, so a crashed run never leaks a slot. Each acquisition opens its
own file description, so threads of one process compete for slots exactly like processes do.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from filelock import FileLock, Timeout


def slots_dir(cache_dir: Path, client_id: str, auth_url: str) -> Path:
    """Folder of the slot files of one API key (the same key as the shared token cache)."""
    digest = hashlib.sha256(f"{client_id}|{auth_url}".encode()).hexdigest()[:16]
    return cache_dir / f"option-streams-{digest}"


class StreamSlot:
    """One held slot; :meth:`release` frees it (idempotent)."""

    def __init__(self, lock: FileLock, index: int) -> None:
        self._lock = lock
        self.index = index

    def release(self) -> None:
        """Free the slot for another stream of any process."""
        if self._lock.is_locked:
            self._lock.release(force=True)


class StreamSlots:
    """``limit`` cross-process slots in ``directory``.

    Args:
        directory: where the slot lock files live (created on first use).
        limit: number of slots (streams allowed open at once), >= 1.
        poll_s: seconds between rounds over the slots while all are taken.
    """

    def __init__(self, directory: Path, limit: int, poll_s: float = 0.05) -> None:
        if limit < 1:
            raise ValueError(f"max_option_streams: expected >= 1, got {limit}")
        self.directory = directory
        self.limit = limit
        self.poll_s = poll_s

    def try_acquire(self) -> StreamSlot | None:
        """A free slot now, or ``None`` when all ``limit`` are held (by any process)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        for i in range(self.limit):
            # a new FileLock (own file descriptor) per attempt: never shared with another thread's slot
            lock = FileLock(str(self.directory / f"slot-{i}.lock"), timeout=0, thread_local=False,
                            is_singleton=False)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                continue
            return StreamSlot(lock, i)
        return None

    def acquire(self, timeout_s: float) -> StreamSlot | None:
        """A slot, waiting up to ``timeout_s`` seconds for one to free up; ``None`` on timeout."""
        deadline = time.monotonic() + max(timeout_s, 0.0)
        while True:
            slot = self.try_acquire()
            if slot is not None or time.monotonic() >= deadline:
                return slot
            time.sleep(min(self.poll_s, max(deadline - time.monotonic(), 0.0)))
