"""The core/shell split: every ``mast3r_ros.core`` module imports with ROS made unimportable."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_SCRIPT = textwrap.dedent("""
    import importlib, pkgutil, sys

    class BlockRos:
        def find_spec(self, name, path=None, target=None):
            top = name.split(".")[0]
            if top in ("rclpy", "rosidl_runtime_py", "tf2_ros") or top.endswith("_msgs") \\
                    or top.endswith("_srvs") or name.startswith("mast3r_ros.ros") \\
                    or name in ("mast3r_ros.msg", "mast3r_ros.srv"):
                raise ImportError(f"blocked by test: {name}")
            return None

    sys.meta_path.insert(0, BlockRos())
    import mast3r_ros.core as core
    names = [m.name for m in pkgutil.walk_packages(core.__path__, "mast3r_ros.core.")]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(m for m in sys.modules if m.startswith(("rclpy", "mast3r_ros.ros")))
    assert not leaked, leaked
    print(len(names))
""")


def test_core_imports_without_ros() -> None:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout.strip().splitlines()[-1]) >= 10  # the core has many modules


def test_block_is_effective() -> None:
    proc = subprocess.run([sys.executable, "-c", _SCRIPT.split("import mast3r_ros.core")[0]
                           + "import rclpy\n"], cwd=REPO, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode != 0 and "blocked by test" in proc.stderr
