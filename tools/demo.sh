#!/usr/bin/env bash
# The README's main job: set up (idempotent), then map the bundled 7-Scenes frames and localize the
# queries through real ROS 2 processes (localizer + replay). MASt3R is used when
# $MAST3R_CHECKPOINT names a checkpoint, else the SIFT baseline (the demo says which).
# Extra arguments go to `python -m mast3r_ros.ros.demo` (e.g. --out DIR, --backend sift).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAST3R_VENV:-$ROOT/.venv}"
"$ROOT/tools/setup.sh"
# shellcheck source=tools/ros_env.sh
source "$ROOT/tools/ros_env.sh"
cd "$ROOT"
exec "$VENV/bin/python" -m mast3r_ros.ros.demo "$@"
