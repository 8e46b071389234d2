"""fast_reciprocal_nn against the official fast_reciprocal_NNs outputs (shared/golden/frm)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from mast3r_ros.core.matching import fast_reciprocal_nn

_SHARED = os.environ.get("MAST3R_ROS_SHARED") or Path(__file__).resolve().parents[3].parent / "shared"
GOLDEN = Path(_SHARED) / "golden" / "frm"


def _settings() -> list[str]:
    meta = GOLDEN / "frm_meta.json"
    if not meta.is_file():  # reported as a failure by test_fixture_present, not hidden
        return []
    return sorted(json.loads(meta.read_text())["settings"])


@pytest.fixture(scope="module")
def frm_data(golden_dir: Path):
    d = golden_dir / "frm"
    return (np.load(d / "frm_inputs.npz"), np.load(d / "frm_results.npz"),
            json.loads((d / "frm_meta.json").read_text()))


def test_fixture_present(golden_dir: Path) -> None:
    assert (golden_dir / "frm" / "frm_results.npz").is_file()
    assert len(_settings()) == 22


def _call_args(key: str, kwargs: dict, res) -> tuple[dict, object]:
    kw = dict(kwargs)
    kw.pop("device")
    kw.pop("block_size", None)
    args = {"pixel_tol": kw.pop("pixel_tol", 0), "ret_basin": kw.pop("ret_basin", False),
            "dist": kw.pop("dist", "l2")}  # the reference's default backend is Euclidean (KD-tree)
    sub = kw.pop("subsample_or_initxy1", 8)
    if isinstance(sub, str):  # explicit seeds stored next to the results
        args["seeds"] = (res[key + "__init_x"], res[key + "__init_y"])
    else:
        args["subsample"] = sub
    ret_xy = kw.pop("ret_xy", True)
    assert not kw, f"unexpected setting keys {kw}"
    return args, ret_xy


def _assert_same(key: str, ret_xy, xy1: np.ndarray, xy2: np.ndarray, w1: int, w2: int, res) -> None:
    if ret_xy is False:  # flat int32 indices y * W + x
        np.testing.assert_array_equal(xy1[:, 1] * w1 + xy1[:, 0], res[key + "__xy1"])
        np.testing.assert_array_equal(xy2[:, 1] * w2 + xy2[:, 0], res[key + "__xy2"])
    elif ret_xy == "y_x":
        np.testing.assert_array_equal(xy1[:, 1], res[key + "__xy1_y"])
        np.testing.assert_array_equal(xy1[:, 0], res[key + "__xy1_x"])
        np.testing.assert_array_equal(xy2[:, 1], res[key + "__xy2_y"])
        np.testing.assert_array_equal(xy2[:, 0], res[key + "__xy2_x"])
    else:
        np.testing.assert_array_equal(xy1, res[key + "__xy1"])
        np.testing.assert_array_equal(xy2, res[key + "__xy2"])


@pytest.mark.parametrize("key", _settings())
@pytest.mark.parametrize("dist", ["setting", "other"])
def test_matches_official(frm_data, key: str, dist: str) -> None:
    inputs, res, meta = frm_data
    name = key.split("__")[0]
    d1 = torch.from_numpy(inputs[name + "_desc1"])
    d2 = torch.from_numpy(inputs[name + "_desc2"])
    args, ret_xy = _call_args(key, meta["settings"][key]["kwargs"], res)
    if dist == "other":  # unit-norm descriptors: dot and l2 give the same matches (README)
        args["dist"] = "dot" if args["dist"] == "l2" else "l2"
    out = fast_reciprocal_nn(d1, d2, **args)
    assert len(out) == (3 if args["ret_basin"] else 2)
    xy1, xy2 = out[0], out[1]
    assert xy1.dtype == torch.int64 and xy2.dtype == torch.int64
    assert xy1.shape == xy2.shape == (meta["settings"][key]["n_matches"], 2)
    _assert_same(key, ret_xy, xy1.numpy(), xy2.numpy(), d1.shape[1], d2.shape[1], res)
    if args["ret_basin"]:
        basin = out[2]
        assert basin.dtype == torch.int32 and basin.shape == (d1.shape[0] * d1.shape[1] + 1,)
        np.testing.assert_array_equal(basin.numpy(), res[key + "__basin"])


def test_numpy_inputs_and_torch_seeds(frm_data) -> None:
    inputs, res, _ = frm_data
    key = "synth__s10_initxy_tol0"
    seeds = (torch.from_numpy(res[key + "__init_x"]), torch.from_numpy(res[key + "__init_y"]))
    xy1, xy2 = fast_reciprocal_nn(inputs["synth_desc1"], inputs["synth_desc2"], seeds=seeds)
    np.testing.assert_array_equal(xy1.numpy(), res[key + "__xy1"])
    np.testing.assert_array_equal(xy2.numpy(), res[key + "__xy2"])


@pytest.mark.gpu
def test_cuda_equals_cpu(frm_data) -> None:
    inputs, res, _ = frm_data
    for name in ("model", "synth"):
        d1 = torch.from_numpy(inputs[name + "_desc1"]).cuda()
        d2 = torch.from_numpy(inputs[name + "_desc2"]).cuda()
        xy1, xy2, basin = fast_reciprocal_nn(d1, d2, ret_basin=True)
        assert xy1.device.type == "cuda"
        key = f"{name}__s08_basin"
        np.testing.assert_array_equal(xy1.cpu().numpy(), res[key + "__xy1"])
        np.testing.assert_array_equal(xy2.cpu().numpy(), res[key + "__xy2"])
        np.testing.assert_array_equal(basin.cpu().numpy(), res[key + "__basin"])
