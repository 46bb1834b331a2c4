"""Errors of the files the tool keeps (outbox, identity store), as one located sentence.

SQLite and the operating system say *what* failed (``database or disk is full``,
``file is not a database``) but not *which file*, nor what to do about it. The file-backed
stores convert their errors with :func:`located` so that every caller (the CLI, a service,
the Python API) gets a :class:`StorageError` naming the file, the cause and the remedy.
SQLite rolls back the failing transaction, so what was committed before stays intact.
"""

from __future__ import annotations

import errno
import shutil
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Final

FULL = (
    "the disk is full: free space on that filesystem (or point {setting} elsewhere) and run "
    "again; what was stored before is kept"
)
READ_ONLY = (
    "the file or its directory is not writable: fix the permissions or point {setting} to a "
    "writable path"
)
CORRUPT = (
    "the file is damaged or not a cdp_tiktok database: move it aside (keep it for recovery, "
    "e.g. with sqlite3 FILE .recover) or point {setting} to another file"
)
CANNOT_OPEN = (
    "the file cannot be opened: check that its directory exists and is writable, or point "
    "{setting} elsewhere"
)
NEARLY_FULL: Final = 1 << 20
"""Free bytes below which an I/O error is reported as a full disk."""
IO_ERROR = "the disk returned an I/O error: check the filesystem, then run again"

_BY_SQLITE_NAME: Final[Mapping[str, str]] = {
    "SQLITE_FULL": FULL,
    "SQLITE_READONLY": READ_ONLY,
    "SQLITE_READONLY_DBMOVED": READ_ONLY,
    "SQLITE_READONLY_DIRECTORY": READ_ONLY,
    "SQLITE_READONLY_RECOVERY": READ_ONLY,
    "SQLITE_PERM": READ_ONLY,
    "SQLITE_NOTADB": CORRUPT,
    "SQLITE_CORRUPT": CORRUPT,
    "SQLITE_CANTOPEN": CANNOT_OPEN,
    "SQLITE_IOERR": IO_ERROR,
}
"""Remedy by SQLite's error name; an extended name (``SQLITE_IOERR_WRITE``) falls back to
its primary name (``SQLITE_IOERR``)."""

_BY_ERRNO: Final[Mapping[int, str]] = {
    errno.ENOSPC: FULL,
    errno.EDQUOT: FULL,
    errno.EROFS: READ_ONLY,
    errno.EACCES: READ_ONLY,
    errno.EPERM: READ_ONLY,
}


class StorageError(RuntimeError):
    """A store file cannot be opened, read or written; ``str()`` names the file, the cause
    and what to do. ``path`` is the file, ``cause`` the original error text."""

    def __init__(self, message: str, path: Path, cause: str) -> None:
        super().__init__(message)
        self.path = path
        self.cause = cause


def storage_error(exc: BaseException, path: Path, what: str, setting: str) -> StorageError:
    """The :class:`StorageError` for ``exc`` raised while using ``what`` (e.g. ``outbox``)
    at ``path``; ``setting`` is the setting or option that chooses the file."""
    name = getattr(exc, "sqlite_errorname", None)
    remedy: str | None = None
    if isinstance(name, str):
        remedy = _BY_SQLITE_NAME.get(name) or _BY_SQLITE_NAME.get("_".join(name.split("_")[:2]))
    if remedy is None and isinstance(exc, OSError) and exc.errno is not None:
        remedy = _BY_ERRNO.get(exc.errno)
    if remedy in (None, IO_ERROR) and _nearly_full(path):
        # SQLite reports a full disk as SQLITE_FULL only for the main file; a WAL or
        # shared-memory file that cannot grow is an I/O error (e.g. SQLITE_IOERR_SHMSIZE).
        remedy = FULL
    cause = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
    message = f"{what} {path}: {cause}"
    if remedy is not None:
        message += f"; {remedy.format(setting=setting)}"
    return StorageError(message, path, cause)


def _nearly_full(path: Path) -> bool:
    try:
        return shutil.disk_usage(path.parent if str(path.parent) else ".").free < NEARLY_FULL
    except OSError:
        return False


@contextmanager
def located(path: Path, what: str, setting: str) -> Iterator[None]:
    """Run the block; turn an ``sqlite3.Error`` or ``OSError`` into a :class:`StorageError`
    about ``path`` (the original is chained as ``__cause__``)."""
    try:
        yield
    except (sqlite3.Error, OSError) as exc:
        raise storage_error(exc, path, what, setting) from exc
