"""Atomic writes: a reader, a crash or a full disk never leaves half a file behind.

Every file two4two writes goes through here: the data goes to a temporary file beside
the target, which then replaces it in one rename, so a path holds either its old
content or the whole new one. Errors name the path.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator, Mapping, Sequence


def _process_umask() -> int:
    """The umask, read once at import (os.umask can only be read by setting it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


# mkstemp makes its files private (0600); a renamed-into-place file gets the mode any other new
# file of this process would have, so a dataset stays readable by whoever could read a plain write.
FILE_MODE = 0o666 & ~_process_umask()


def is_interrupted_write(path: Path) -> bool:
    """A temporary file of `atomic_write` (hidden, ending in .tmp): if it is still there when no
    writer runs, its write was killed before the rename, and the file it was for was never written."""
    return path.name.startswith(".") and path.name.endswith(".tmp")


@contextmanager
def named_errors(path: str | os.PathLike) -> Iterator[None]:
    """An OSError in the block is raised again naming `path` (not a temporary file beside it)."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None


def _temporary_beside(path: Path) -> Path:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, FILE_MODE)
    finally:
        os.close(fd)
    return Path(tmp)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], Any]) -> Path:
    """Call `write(file)` on a temporary file, then rename it to `path` (creating its folder)."""
    path = Path(path)
    with named_errors(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = _temporary_beside(path)
    try:
        with named_errors(path):
            with open(tmp, "wb") as fh:
                write(fh)
            os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, data: Any) -> Path:
    """Indented UTF-8 JSON with a final newline (sidecars, manifests, histories)."""
    return atomic_write_text(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def atomic_write_csv(path: str | os.PathLike, records: Sequence[Mapping[str, Any]]) -> Path:
    """Records (dicts with the same keys) as CSV with a header row."""
    table = io.StringIO(newline="")
    writer = csv.DictWriter(table, fieldnames=list(records[0]) if records else [])
    writer.writeheader()
    writer.writerows(records)
    return atomic_write_text(path, table.getvalue())


def atomic_write_files(files: Mapping[Path, bytes]) -> None:
    """Several files that belong together: all are written to temporary names first, then renamed."""
    temps: list[tuple[Path, Path]] = []
    try:
        for path, data in files.items():
            path = Path(path)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = _temporary_beside(path)
            temps.append((tmp, path))
            with named_errors(path):
                tmp.write_bytes(data)
        for tmp, path in temps:
            os.replace(tmp, path)
    finally:
        for tmp, _ in temps:
            tmp.unlink(missing_ok=True)
