"""Source-tree development: the source package wins, generated interfaces come from the install."""

from __future__ import annotations

from pathlib import Path

import mast3r_ros
import mast3r_ros.core
from mast3r_ros.msg import LocalizationStatus
from mast3r_ros.srv import LoadMap

REPO = Path(__file__).resolve().parents[2]


def test_source_first_interfaces_from_install() -> None:
    assert Path(mast3r_ros.__path__[0]) == REPO / "mast3r_ros"
    assert Path(mast3r_ros.core.__file__).is_relative_to(REPO)
    import mast3r_ros.msg as generated

    assert not Path(generated.__file__).is_relative_to(REPO / "mast3r_ros")
    msg = LocalizationStatus(reason="x", keyframe_ids=[3, 1], retrieval_scores=[0.5, 0.25])
    assert list(msg.keyframe_ids) == [3, 1] and msg.frames_dropped == 0
    assert LoadMap.Response(success=True, num_keyframes=4).num_keyframes == 4


def test_top_level_init_has_no_side_effects() -> None:
    import ast

    tree = ast.parse((REPO / "mast3r_ros" / "__init__.py").read_text())
    body = [ast.unparse(n) for n in tree.body if not (isinstance(n, ast.Expr)
                                                        and isinstance(n.value, ast.Constant))]
    assert body == ["from pkgutil import extend_path", "__path__ = extend_path(__path__, __name__)"]
