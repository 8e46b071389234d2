#!/usr/bin/env bash
# Set up (idempotent) and run the whole test suite; extra arguments go to pytest.
# Exit code = pytest's exit code.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAST3R_VENV:-$ROOT/.venv}"
"$ROOT/tools/setup.sh" || { echo "[test] setup failed" >&2; exit 2; }
# shellcheck source=tools/ros_env.sh
source "$ROOT/tools/ros_env.sh"
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID FASTDDS_DEFAULT_PROFILES_FILE=$FASTDDS_DEFAULT_PROFILES_FILE" >&2
cd "$ROOT"
"$VENV/bin/python" -m pytest "$@"
exit $?
