"""File-system primitives of the map store: contained, non-blocking reads and durable writes.

Reading never follows a symbolic link inside a map directory and never blocks: a file is opened
with ``O_NOFOLLOW | O_NONBLOCK`` and refused unless ``fstat`` says it is a regular file, so a FIFO,
a device or a link planted in a map gives :class:`~mast3r_ros.core.errors.MapFormatError` at once
instead of a hang. Writing maps the operating system's errors (full disk, read-only file system,
permissions) to :class:`~mast3r_ros.core.errors.MapError` with a message that says what to do.
A map directory has one writer at a time, serialised by :class:`MapLock` (``fcntl.flock``).
"""

from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mast3r_ros.core.errors import MapError, MapFormatError, MapLockedError

__all__ = ["open_regular", "check_dir", "read_small", "pread_exact", "fsync_dir", "write_all",
           "write_error", "writing", "MapLock", "LOCK_NAME"]

#: lock file of a map directory (kept; it is the store's own)
LOCK_NAME = ".lock"

_NO_SPACE = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}
_NO_WRITE = {errno.EROFS, errno.EACCES, errno.EPERM}


def open_regular(path: Path) -> int:
    """Open ``path`` read-only without following a final symlink and without blocking.

    Returns:
        An open file descriptor of a regular file (the caller closes it).

    Raises:
        MapFormatError: missing, unreadable, a symlink, or not a regular file.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        what = "a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise MapFormatError(f"cannot read {path}: {what}; the map is incomplete or corrupt, "
                             "rebuild it or restore it from a backup") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise MapFormatError(f"{path} is not a regular file (mode {stat.filemode(mode)}); a "
                                 "map holds only regular files, rebuild or restore it")
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_dir(path: Path) -> None:
    """Refuse a path that is not a real directory (a link to one included).

    Raises:
        MapFormatError: missing, a symbolic link, or not a directory.
    """
    try:
        mode = os.lstat(path).st_mode
    except OSError as exc:
        raise MapFormatError(f"{path} is missing ({exc.strerror}); the map is incomplete, "
                             "restore or rebuild it") from exc
    if not stat.S_ISDIR(mode):
        raise MapFormatError(f"{path} is not a directory (links are refused); restore or rebuild "
                             "the map")


def pread_exact(fd: int, nbytes: int, offset: int, what: str) -> bytearray:
    """Read exactly ``nbytes`` at ``offset`` into a new buffer.

    Raises:
        MapFormatError: the file is shorter than that (truncated) or cannot be read.
    """
    buf = bytearray(nbytes)
    view, done = memoryview(buf), 0
    try:
        while done < nbytes:
            n = os.preadv(fd, [view[done:]], offset + done)
            if n == 0:
                raise MapFormatError(f"{what}: the file ends after {done} of {nbytes} bytes (a "
                                     "truncated copy?); restore the map or rebuild it")
            done += n
    except OSError as exc:
        raise MapFormatError(f"{what}: read error ({exc.strerror})") from exc
    return buf


def read_small(path: Path, limit: int) -> bytes:
    """Whole content of a small regular file (at most ``limit`` bytes).

    Raises:
        MapFormatError: not a regular file, or larger than ``limit``.
    """
    fd = open_regular(path)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise MapFormatError(f"{path} is {size} bytes, more than the {limit} allowed")
        return bytes(pread_exact(fd, size, 0, str(path)))
    finally:
        os.close(fd)


def write_error(exc: OSError, path: Path) -> MapError:
    """A typed, actionable error for an OS error raised while writing a map under ``path``."""
    if exc.errno in _NO_SPACE:
        hint = "the disk (or quota) is full: free some space and save again"
    elif exc.errno in _NO_WRITE:
        hint = "the map directory is not writable: check the file system and permissions"
    else:
        hint = "check the file system"
    return MapError(f"cannot write the map to {path}: {exc.strerror or exc}; {hint} "
                         "(the previous version of the map is intact)")


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn any ``OSError`` raised inside into a :class:`MapError` about ``path``."""
    try:
        yield
    except OSError as exc:
        raise write_error(exc, path) from exc


def write_all(fd: int, data: memoryview | bytes) -> None:
    """Write every byte of ``data`` at the current position of ``fd`` (OSError on failure)."""
    view = memoryview(data).cast("B")
    while view:
        n = os.write(fd, view)
        view = view[n:]


def fsync_dir(path: Path) -> None:
    """Make the entries of a directory (creations, renames) durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class MapLock:
    """Exclusive writer lock of one map directory (``<map>/.lock``, ``fcntl.flock``).

    The lock is held by an open file description, so it is released when the holder exits or is
    killed, and two holders in one process exclude each other too. Readers never take it.

    Args:
        map_dir: the map directory (must exist).
        timeout: seconds to wait for another writer before giving up.
    """

    def __init__(self, map_dir: Path, timeout: float) -> None:
        self.path = map_dir / LOCK_NAME
        self.timeout = timeout
        self._fd = -1

    def __enter__(self) -> MapLock:
        with writing(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "pid unknown"
                    os.close(fd)
                    raise MapLockedError(
                        f"map {self.path.parent} is being saved by another process ({holder}); "
                        f"waited {self.timeout:g} s: retry when that save has finished") from None
                time.sleep(0.02)
            except OSError as exc:
                os.close(fd)
                raise write_error(exc, self.path) from exc
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()}\n".encode(), 0)
        except OSError:
            pass  # the holder note is informative only
        self._fd = fd
        return self

    def __exit__(self, *exc: object) -> None:
        fd, self._fd = self._fd, -1
        if fd >= 0:
            os.close(fd)  # releases the flock
