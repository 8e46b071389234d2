"""The ``mast3r-ros`` command line (``python -m mast3r_ros.cli <subcommand>``).

Each subcommand is one module listed in :data:`SUBCOMMANDS` exposing ``NAME`` (str), ``HELP``
(str), ``add_arguments(parser)`` and ``run(args) -> int``. Adding a subcommand = one module + one
line here.

Failures are one line on stderr and a non-zero status, never a traceback: 2 for a bad command line
or a typed :class:`~mast3r_ros.core.errors.Mast3rRosError` (each says what to do), 130 when
interrupted, 3 for anything else (a bug; ``-v`` adds the traceback).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import NoReturn, Optional, Sequence

from mast3r_ros.core.errors import Mast3rRosError

__all__ = ["SUBCOMMANDS", "CliParser", "build_parser", "main"]

log = logging.getLogger("mast3r-ros")

#: modules implementing the subcommands, in help order
SUBCOMMANDS = [
    "mast3r_ros.cli.map_from_rgbd",
    "mast3r_ros.cli.encode_map",
    "mast3r_ros.cli.localize",
    "mast3r_ros.cli.eval",
    "mast3r_ros.cli.match",
    "mast3r_ros.cli.build_map",
]


class CliParser(argparse.ArgumentParser):
    """An argument parser whose errors are one line (argparse prints the usage block too)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = CliParser(prog="mast3r-ros", description="MASt3R relocalization tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in dict.fromkeys(SUBCOMMANDS):  # tolerate a duplicated entry
        mod = importlib.import_module(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def _one_line(exc: BaseException) -> str:
    return " ".join(f"{type(exc).__name__}: {exc}".split())


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (see the module docstring)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except Mast3rRosError as exc:
        log.error("%s", _one_line(exc))
        return 2
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    except Exception as exc:  # last resort: one line and status 3, no traceback
        log.error("internal error, this is a bug (please report it with the output of -v): %s",
                  _one_line(exc), exc_info=args.verbose)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
