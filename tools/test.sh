#!/usr/bin/env bash
# Set up (idempotent), then lint (ruff), type-check (mypy) and run the whole test suite; extra
# arguments go to pytest. Exit code: pytest's, or 1 when it passed but lint or typing failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAST3R_VENV:-$ROOT/.venv}"
"$ROOT/tools/setup.sh" || { echo "[test] setup failed" >&2; exit 2; }
# shellcheck source=tools/ros_env.sh
source "$ROOT/tools/ros_env.sh"
echo "[test] ROS_DOMAIN_ID=$ROS_DOMAIN_ID FASTDDS_DEFAULT_PROFILES_FILE=$FASTDDS_DEFAULT_PROFILES_FILE" >&2
cd "$ROOT"
checks=0
echo "[test] ruff check mast3r_ros" >&2
"$VENV/bin/python" -m ruff check mast3r_ros || checks=1
echo "[test] mypy mast3r_ros" >&2
"$VENV/bin/python" -m mypy mast3r_ros || checks=1
"$VENV/bin/python" -m pytest "$@"
rc=$?
if [ "$rc" -eq 0 ] && [ "$checks" -ne 0 ]; then
  echo "[test] tests passed, but ruff or mypy reported problems (see above)" >&2
  rc=1
fi
exit $rc
