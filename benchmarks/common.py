"""What every benchmark shares: the git revision, environment facts, a warm-up + median timer and
the one-JSON-line report."""

from __future__ import annotations

import json
import platform
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import torch

__all__ = ["git_rev", "environment", "median_seconds", "report"]


def git_rev() -> str:
    """Short git revision of the repository (``unknown`` outside a checkout)."""
    try:
        root = Path(__file__).resolve().parents[1]
        return subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"],
                              capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def environment() -> dict[str, Any]:
    """Device and versions for a report."""
    return {"device": "cuda" if torch.cuda.is_available() else "cpu",
            "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "git_rev": git_rev()}


def median_seconds(fn: Callable[[], Any], runs: int, warmup: int = 1) -> tuple[float, list[float]]:
    """Median wall time of ``fn`` over ``runs`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def report(name: str, results: dict[str, Any]) -> None:
    """Print one JSON line ``{"benchmark": name, <environment>, <results>}``."""
    print(json.dumps({"benchmark": name, **environment(), **results}), flush=True)
