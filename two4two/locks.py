"""One writer at a time: an OS-level lock on a directory (a dataset, a training, a study database).

The lock is `flock` on `DIR/.lock`, so it belongs to the process holding the open file: a
process that ends, even by kill -9, releases it, and nothing stale is left to clean up. The
file also records the holder's pid, host and start time, which a refused writer names.
Readers never take it.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from two4two.errors import Two4TwoError
from two4two.io import named_errors

LOCK_NAME = ".lock"


class LockedError(Two4TwoError):
    """Another process is writing the same directory."""


def holder(lock_path: Path) -> dict:
    """Who holds (or last held) a lock, as its file records it: pid, host, since."""
    try:
        return json.loads(Path(lock_path).read_text() or "{}")
    except (OSError, ValueError):
        return {}


@contextmanager
def exclusive(target: str | os.PathLike, what: str = "directory", lock_path: str | os.PathLike | None = None) -> Iterator[Path]:
    """Hold the write lock of the directory `target` (creating it) for the block, or raise LockedError.

    `lock_path` puts the lock elsewhere, for a target that is a file (a study database: `DB.lock`).
    """
    target = Path(target)
    path = Path(lock_path) if lock_path else target / LOCK_NAME
    with named_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            who = holder(path)
            since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(who["since"])) if "since" in who else "?"
            raise LockedError(
                f"{what} {target}: is being written by another process (pid {who.get('pid', '?')} on "
                f"{who.get('host', '?')}, since {since}); wait for it to finish or stop it"
            ) from None
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}).encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, record, 0)
        yield path
    finally:
        os.close(fd)  # closing the descriptor releases the flock
