"""Crafted image files for the io tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import struct
import threading
import zlib
from typing import Any, Callable


def _chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def png_bytes(width: int, height: int, *, bit_depth: int = 1, color_type: int = 0,
              idat: bytes | None = None) -> bytes:
    """A PNG with the given IHDR; ``idat=None`` compresses all-zero rows (a valid image).

    A 1-bit grey PNG of all-zero rows compresses about 1000:1, so a few kB declare millions of
    pixels: a decompression bomb.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, color_type, 0, 0, 0)
    if idat is None:
        channels = {0: 1, 2: 3, 4: 2, 6: 4}[color_type]
        row = b"\0" * (1 + (width * channels * bit_depth + 7) // 8)
        comp = zlib.compressobj(9)
        idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def in_thread(fn: Callable[..., Any], *args: Any) -> BaseException | None:
    """Run ``fn(*args)`` in a thread and return what it raised; a hang (a blocking open of a
    FIFO) fails the test after a minute instead of blocking the suite."""
    box: list[BaseException | None] = [None]

    def target() -> None:
        try:
            fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box[0] = exc

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(60.0)
    assert not t.is_alive(), f"{getattr(fn, '__name__', fn)} blocked on {args[:1]}"
    return box[0]
