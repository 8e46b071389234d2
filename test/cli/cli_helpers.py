"""Helpers of the CLI tests (a uniquely named module, not conftest)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def json_lines(text: str) -> list[dict]:
    """The JSON documents printed one per line (other lines skipped)."""
    return [json.loads(ln) for ln in text.splitlines() if ln.startswith("{")]


def run_cli(*args: str, timeout: float = 300.0) -> subprocess.CompletedProcess:
    """``python -m mast3r_ros.cli ARGS`` from the repository root (this checkout's package)."""
    return subprocess.run([sys.executable, "-m", "mast3r_ros.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
