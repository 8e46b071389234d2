"""The ``mast3r-ros`` command line (``python -m mast3r_ros.cli <subcommand>``).

Each subcommand is one module listed in :data:`SUBCOMMANDS` exposing ``NAME`` (str), ``HELP``
(str), ``add_arguments(parser)`` and ``run(args) -> int``. Adding a subcommand = one module + one
line here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Optional, Sequence

from mast3r_ros.core.errors import Mast3rRosError

__all__ = ["SUBCOMMANDS", "build_parser", "main"]

#: modules implementing the subcommands, in help order
SUBCOMMANDS = [
    "mast3r_ros.cli.map_from_rgbd",
    "mast3r_ros.cli.localize",
    "mast3r_ros.cli.eval",
    "mast3r_ros.cli.match",
    "mast3r_ros.cli.build_map",
]


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with one sub-parser per entry of :data:`SUBCOMMANDS`."""
    parser = argparse.ArgumentParser(prog="mast3r-ros", description="MASt3R relocalization tools")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in dict.fromkeys(SUBCOMMANDS):  # tolerate a duplicated entry
        mod = importlib.import_module(name)
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point; returns the exit status (2 = typed error with its message on stderr)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args._run(args) or 0)
    except Mast3rRosError as exc:
        logging.getLogger("mast3r-ros").error("%s: %s", type(exc).__name__, exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
