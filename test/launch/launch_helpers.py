"""What the launch_testing tests of this folder share: the camera topics of the README's launch
lines, the shared data set, and the installed launch files."""

from __future__ import annotations

import os
from pathlib import Path

#: the topics of the README's launch lines (``image_topic:=`` / ``camera_info_topic:=``) + depth
IMAGE, INFO, DEPTH = "/camera/color/image_raw", "/camera/color/camera_info", "/camera/depth"
#: the team's shared folder (``MAST3R_ROS_SHARED``, else next to the checkout), as in conftest.py
SHARED = Path(os.environ.get("MAST3R_ROS_SHARED", Path(__file__).resolve().parents[3] / "shared"))
#: the 7-Scenes RGB-D set with its ``sequence/``
SEVEN_SCENES = SHARED / "data" / "sevenscenes_redkitchen_rgbd"


def launch_file(name: str) -> str:
    """Path of an installed launch file of the package (what ``ros2 launch`` starts)."""
    from ament_index_python.packages import get_package_share_directory

    return str(Path(get_package_share_directory("mast3r_ros")) / "launch" / name)
