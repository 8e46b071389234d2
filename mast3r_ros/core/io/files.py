"""Reading untrusted files without hanging or over-reading.

A path given by a user, a map or a cache may name a FIFO (``open`` blocks until a writer comes), a
device (``/dev/zero`` never ends) or a file far larger than anything legitimate. The helpers here
check the type with :func:`os.stat` before opening, open without blocking, check again on the open
descriptor (the path may have been swapped in between) and read at most a stated number of bytes.
"""

from __future__ import annotations

import os
import stat
from typing import Union

from mast3r_ros.core.errors import InputError, Mast3rRosError

__all__ = ["check_regular_file", "read_regular_file"]

PathLike = Union[str, "os.PathLike[str]"]
"""A file path: ``str`` or ``pathlib.Path``."""

_OPEN_FLAGS = (os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
               | getattr(os, "O_CLOEXEC", 0))


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_regular_file(path: PathLike, error: type[Mast3rRosError] = InputError) -> os.stat_result:
    """Stat ``path`` (following links) and refuse anything but a regular file.

    Args:
        path: the file.
        error: the typed error to raise (e.g. ``ImageError``, ``CheckpointError``).

    Returns:
        The ``os.stat`` result (``st_size`` in bytes).

    Raises:
        error: the path does not exist, cannot be stat'ed, or is a directory, FIFO, device, socket.
    """
    try:
        st = os.stat(path)
    except FileNotFoundError as exc:
        raise error(f"{path} does not exist") from exc
    except (OSError, ValueError) as exc:  # ValueError: embedded NUL byte in the path
        raise error(f"cannot access {path}: {exc}") from exc
    if not stat.S_ISREG(st.st_mode):
        raise error(f"{path} is {_kind(st.st_mode)}; a regular file is expected")
    return st


def read_regular_file(path: PathLike, max_bytes: int,
                      error: type[Mast3rRosError] = InputError) -> bytes:
    """Read a whole regular file of at most ``max_bytes`` bytes, never blocking on a FIFO.

    Args:
        path: the file.
        max_bytes: largest accepted size in bytes (checked on the size the file system reports
            before reading, and again while reading, in case the file grows).
        error: the typed error to raise.

    Returns:
        The file's content.

    Raises:
        error: not a regular file (checked before and after opening), larger than ``max_bytes``,
            or an OS error while reading.
    """
    st = check_regular_file(path, error)
    if st.st_size > max_bytes:
        raise error(f"{path} has {st.st_size} bytes, more than the limit of {max_bytes}")
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        raise error(f"cannot open {path}: {exc.strerror or exc}") from exc
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):  # swapped between stat and open
            raise error(f"{path} is {_kind(mode)}; a regular file is expected")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as f:
            data = f.read(max_bytes + 1)
    except OSError as exc:
        raise error(f"cannot read {path}: {exc.strerror or exc}") from exc
    finally:
        os.close(fd)
    if len(data) > max_bytes:
        raise error(f"{path} has more than the limit of {max_bytes} bytes")
    return data

