#!/usr/bin/env python3
"""Point the ROS 2 PyPI wheels' exported CMake include paths at this Python environment.

The ``ros-*`` wheels ship ``share/<pkg>/cmake/export_<pkg>__rosidl_generator_pyExport.cmake`` files
whose ``INTERFACE_INCLUDE_DIRECTORIES`` name the wheel build machine's Python headers and numpy
headers (``/opt/python/cp311-cp311/...``). Building our own messages against them fails until
those two paths name this interpreter's include directory and ``numpy.get_include()``.

Idempotent; rewrites only files that change. Run it again after installing more ``ros-*`` wheels.

Usage: python tools/fix_ros_cmake_paths.py [--prefix PREFIX]   (default: sys.prefix)
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import sysconfig
from pathlib import Path

LOG = logging.getLogger("fix_ros_cmake_paths")
_PY_INCLUDE = re.compile(r"[^;\"]*/include/python3\.\d+")
_NUMPY_INCLUDE = re.compile(r"[^;\"]*/site-packages/numpy/(?:_core|core)/include")


def fix_file(path: Path, py_include: str, np_include: str) -> bool:
    """Rewrite the include paths of one exported CMake file; True when the file changed."""
    text = path.read_text()
    new = _PY_INCLUDE.sub(lambda _m: py_include, text)
    new = _NUMPY_INCLUDE.sub(lambda _m: np_include, new)
    if new == text:
        return False
    path.write_text(new)
    return True


def fix_prefix(prefix: Path) -> int:
    """Fix the exported rosidl Python CMake files under ``prefix/share``; returns the count."""
    import numpy

    py_include = sysconfig.get_paths()["include"]
    np_include = numpy.get_include()
    changed = 0
    for path in sorted(prefix.glob("share/*/cmake/export_*__rosidl_generator_pyExport*.cmake")):
        if fix_file(path, py_include, np_include):
            changed += 1
    return changed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", type=Path, default=Path(sys.prefix))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    changed = fix_prefix(args.prefix)
    LOG.info("rewrote include paths in %d exported CMake file(s) under %s", changed, args.prefix)
    return 0


if __name__ == "__main__":
    sys.exit(main())
