"""Start the package's nodes as separate processes with the right transport settings.

Used by the demo and the graph tests: the same executables, parameters and remappings that
``launch/localize.launch.py`` uses on a ROS 2 install (where ``ros2 launch`` is available).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO, Any, Optional, Sequence

from mast3r_ros.core.errors import ConfigError

__all__ = ["package_share", "ros_env", "node_command", "start_node", "stop_process", "MODULES"]

#: node name -> module whose ``main`` runs it (``python -m <module>``)
MODULES = {"localizer": "mast3r_ros.ros.localizer.node", "replay": "mast3r_ros.ros.replay.node",
           "mapper": "mast3r_ros.ros.mapper.node", "odometry": "mast3r_ros.ros.odometry.node",
           "slam": "mast3r_ros.ros.slam.node"}


def _source_checkout() -> Optional[Path]:
    """The source tree this module runs from (development), identified by its package.xml."""
    for parent in Path(__file__).resolve().parents:
        if (parent / "package.xml").is_file() and (parent / "mast3r_ros").is_dir():
            return parent
    return None


def package_share() -> Path:
    """The package's data directory (``config/``, ``launch/``, ``demo_data/``).

    In order: ``$MAST3R_ROS_SHARE``; the source checkout this module runs from (development, so
    that code and data come from the same tree); the installed ``share/mast3r_ros`` found through
    the ament index (colcon or pip install).

    Raises:
        ConfigError: none of them exists.
    """
    env = os.environ.get("MAST3R_ROS_SHARE", "")
    if env:
        return Path(env)
    checkout = _source_checkout()
    if checkout is not None:
        return checkout
    try:
        from ament_index_python.packages import get_package_share_directory

        return Path(get_package_share_directory("mast3r_ros"))
    except Exception as exc:
        raise ConfigError("cannot find the mast3r_ros share directory: install the package "
                          "(colcon build / tools/setup.sh) or set MAST3R_ROS_SHARE") from exc


def _profile_file() -> str:
    try:
        profile = package_share() / "config" / "fastdds_localhost.xml"
    except ConfigError:
        return ""  # keep Fast DDS defaults
    return str(profile) if profile.is_file() else ""


def ros_env(domain_id: Optional[int] = None,
            base: Optional[dict[str, str]] = None) -> dict[str, str]:
    """Environment for child ROS processes: loopback-only Fast DDS profile, localhost discovery,
    a domain id (given, else inherited, else derived from our pid)."""
    env = dict(os.environ if base is None else base)
    profile = env.get("FASTDDS_DEFAULT_PROFILES_FILE") or _profile_file()
    if profile:
        env["FASTDDS_DEFAULT_PROFILES_FILE"] = profile
    env.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    if domain_id is not None:
        env["ROS_DOMAIN_ID"] = str(domain_id)
    else:
        env.setdefault("ROS_DOMAIN_ID", str(1 + os.getpid() % 100))
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _format_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_format_value(v) for v in value) + "]"
    if isinstance(value, str):
        return "'" + value.replace("'", "''") + "'"  # YAML single-quoted: no aliases, no typing
    return str(value)


def node_command(node: str, params: dict[str, Any], namespace: str = "",
                 params_file: Optional[Path] = None,
                 remaps: Sequence[tuple[str, str]] = ()) -> list[str]:
    """Command line of one node: ``python -m <module> --ros-args ...`` (``-p`` beats the file)."""
    cmd = [sys.executable, "-m", MODULES[node], "--ros-args"]
    if namespace:
        cmd += ["-r", f"__ns:={namespace}"]
    for src, dst in remaps:
        cmd += ["-r", f"{src}:={dst}"]
    if params_file is not None:
        cmd += ["--params-file", str(params_file)]
    for name, value in params.items():
        cmd += ["-p", f"{name}:={_format_value(value)}"]
    return cmd


def start_node(node: str, params: dict[str, Any], env: dict[str, str], log: Optional[IO] = None,
               **kwargs: Any) -> subprocess.Popen:
    """Start a node process (own process group, output to ``log`` or inherited)."""
    # from a source checkout, run the child from it too, so that it imports the same code
    return subprocess.Popen(node_command(node, params, **kwargs), env=env, cwd=_source_checkout(),
                            stdout=log, stderr=subprocess.STDOUT if log else None,
                            start_new_session=True)


def stop_process(proc: subprocess.Popen, timeout: float = 10.0) -> int:
    """SIGINT (clean rclpy shutdown, frees shared memory), then SIGTERM/SIGKILL if needed."""
    for sig, wait in ((signal.SIGINT, timeout), (signal.SIGTERM, 3.0), (signal.SIGKILL, 3.0)):
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            continue
    return proc.wait()
