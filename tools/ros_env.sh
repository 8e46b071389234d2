# Source this file: transport settings for ROS 2 processes started by tests and the demo.
# Shared memory + loopback-only UDP (see config/fastdds_localhost.xml), localhost discovery, and a
# ROS_DOMAIN_ID derived from the process id unless one is set, so parallel runs do not see each other.
_MAST3R_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export FASTDDS_DEFAULT_PROFILES_FILE="${FASTDDS_DEFAULT_PROFILES_FILE:-$_MAST3R_ROOT/config/fastdds_localhost.xml}"
export ROS_AUTOMATIC_DISCOVERY_RANGE="${ROS_AUTOMATIC_DISCOVERY_RANGE:-LOCALHOST}"
export ROS_DOMAIN_ID="${ROS_DOMAIN_ID:-$(( ($$ % 100) + 1 ))}"
export RMW_IMPLEMENTATION="${RMW_IMPLEMENTATION:-rmw_fastrtps_cpp}"
# With the PyPI install nothing sets AMENT_PREFIX_PATH; `ros2 launch` / FindPackageShare need the venv
# prefix on it to find this package's share/ (checked by hand with launch 3.7.1 / launch_ros 0.28).
_MAST3R_VENV="${MAST3R_VENV:-$_MAST3R_ROOT/.venv}"
case ":${AMENT_PREFIX_PATH:-}:" in
  *":$_MAST3R_VENV:"*) ;;
  *) export AMENT_PREFIX_PATH="$_MAST3R_VENV${AMENT_PREFIX_PATH:+:$AMENT_PREFIX_PATH}" ;;
esac
unset _MAST3R_ROOT _MAST3R_VENV
