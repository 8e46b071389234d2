"""Coarse-to-fine crop selection against the official coarse_to_fine outputs (shared/golden/c2f)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.core.errors import MatchingError
from mast3r_ros.core.matching import c2f

CASES = ["c1_land_land_512", "c2_port_land_512", "c3_single_res_overlap025", "c4_maxdim224",
         "c5_partial_overlap"]


@pytest.fixture(scope="module")
def c2f_data(golden_dir: Path):
    d = golden_dir / "c2f"
    return np.load(d / "c2f_cases.npz"), json.loads((d / "c2f_meta.json").read_text())


def test_helpers(c2f_data) -> None:
    z, meta = c2f_data
    h = meta["helpers"]
    for item in h["_start_pos"]:
        assert c2f.start_positions(*item["args"]).tolist() == item["result"]
    for item in h["_make_overlapping_grid"]:
        assert c2f.overlapping_grid(*item["args"]).tolist() == item["result"]
    cells = z["norm_windows__cells_in"]
    np.testing.assert_array_equal(c2f.normalize_windows(cells, 768, 1024, None), z["norm_windows__free"])
    np.testing.assert_array_equal(c2f.normalize_windows(cells, 768, 1024, (384, 512)),
                                  z["norm_windows__forced_384x512"])
    assert c2f.crop_tag(h["crop_tag"]["cell"]) == h["crop_tag"]["result"]
    rows, cols = c2f.crop_slice(h["crop_slice"]["cell"])
    assert [[rows.start, rows.stop], [cols.start, cols.stop]] == h["crop_slice"]["result"]


@pytest.mark.parametrize("case", CASES)
def test_case_intermediates_and_crops(c2f_data, case: str) -> None:
    z, meta = c2f_data
    m, p = meta["cases"][case], case + "__"
    (hq, wq), (hr, wr) = m["img_query_shape_HW"], m["img_ref_shape_HW"]
    kw = m["kwargs"]
    res_q, res_r = c2f.split_resolution(kw["forced_resolution"])
    gq = c2f.overlapping_grid(hq, wq, kw["maxdim"], kw["overlap"])
    gr = c2f.overlapping_grid(hr, wr, kw["maxdim"], kw["overlap"])
    np.testing.assert_array_equal(gq, z[p + "grid_query_raw"])
    np.testing.assert_array_equal(gr, z[p + "grid_ref_raw"])
    gq, gr = c2f.normalize_windows(gq, hq, wq, res_q), c2f.normalize_windows(gr, hr, wr, res_r)
    np.testing.assert_array_equal(gq, z[p + "grid_query"])
    np.testing.assert_array_equal(gr, z[p + "grid_ref"])
    xy_q, xy_r = z[p + "pos2d_in_query"], z[p + "pos2d_in_ref"]
    a = c2f.score_cells(gq, hr, wr, xy_q, xy_r, resolution=res_r)
    b = c2f.score_cells(gr, hq, wq, xy_r, xy_q, resolution=res_q)
    np.testing.assert_array_equal(a[0], z[p + "scored_q_cells_query"])
    np.testing.assert_array_equal(a[1], z[p + "scored_q_cells_ref"])
    np.testing.assert_array_equal(b[0], z[p + "scored_b_cells_ref"])
    np.testing.assert_array_equal(b[1], z[p + "scored_b_cells_query"])
    np.testing.assert_allclose(np.concatenate([a[2], b[2]]), z[p + "corres_weights"], rtol=1e-12, atol=0)
    assert c2f.greedy_selection(z[p + "corres_weights"]) == z[p + "greedy_order"].tolist()
    pairs = c2f.select_crop_pairs(np.zeros((hq, wq, 3), np.uint8), (hr, wr), xy_q, xy_r,
                                  kw["maxdim"], kw["overlap"], kw["forced_resolution"])
    assert len(pairs) == m["n_crop_pairs"]
    np.testing.assert_array_equal(np.array([c[0] for c in pairs]), z[p + "crops_query"])
    np.testing.assert_array_equal(np.array([c[1] for c in pairs]), z[p + "crops_ref"])
    assert [["q" + c2f.crop_tag(cq), "b" + c2f.crop_tag(cr)] for cq, cr in pairs] == m["tags"]


def test_numpy_int_resolution_and_none(c2f_data) -> None:
    z, meta = c2f_data
    p = "c3_single_res_overlap025__"
    xy_q, xy_r = z[p + "pos2d_in_query"], z[p + "pos2d_in_ref"]
    a = c2f.select_crop_pairs((1200, 1600), (1200, 1600), xy_q, xy_r, 512, 0.25, np.array([384, 512]))
    np.testing.assert_array_equal(np.array([c[0] for c in a]), z[p + "crops_query"])
    free = c2f.select_crop_pairs((1200, 1600), (1200, 1600), xy_q, xy_r, 512, 0.25, None)
    assert len(free) > 0
    for cq, cr in free:  # None: windows keep a 3.01:4 aspect inside the image
        for cell, (h, w) in ((cq, (1200, 1600)), (cr, (1200, 1600))):
            cw, ch = cell[2] - cell[0], cell[3] - cell[1]
            assert 0 <= cell[0] and cell[2] <= w and 0 <= cell[1] and cell[3] <= h
            assert abs(ch - cw * 3.01 / 4) <= 1 or abs(cw - ch * 3.01 / 4) <= 1


def test_no_correspondences_gives_no_pairs() -> None:
    assert c2f.select_crop_pairs((800, 1000), (800, 1000), np.zeros((0, 2)), np.zeros((0, 2)),
                                 forced_resolution=(384, 512)) == []
    few = np.array([[10.0, 10.0]] * 9)  # fewer than 10 in any window
    assert c2f.select_crop_pairs((800, 1000), (800, 1000), few, few, forced_resolution=(384, 512)) == []


def test_greedy_stops_when_nothing_adds_weight() -> None:
    assert c2f.greedy_selection(np.zeros((3, 5))) == []
    assert c2f.greedy_selection(np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])) == [1]


@pytest.mark.parametrize("bad", [{"overlap": 1.0}, {"forced_resolution": (384,)},
                                 {"forced_resolution": (1000, 512)}, {"xy_r": np.zeros((5, 3))},
                                 {"xy_r": np.full((5, 2), np.nan)}])
def test_bad_input_raises(bad) -> None:
    kw = {"xy_q": np.zeros((5, 2)), "xy_r": np.zeros((5, 2)), "forced_resolution": (384, 512)}
    kw.update(bad)
    with pytest.raises(MatchingError):
        c2f.select_crop_pairs((800, 1000), (800, 1000), **kw)
