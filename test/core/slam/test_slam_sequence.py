"""The back end's targets on the real 7-Scenes sequence (SIFT backend, CPU).

Fed by the real front end (:class:`~mast3r_ros.core.tracking.Tracker`, through
``eval slam``'s own ``front_end_stream``) with the SLAM front end's pipeline preset, exactly as
``mast3r-ros eval slam`` runs. Each expensive run is a module-scoped fixture.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from mast3r_ros.cli.eval_slam import front_end_stream, run_back_end
from mast3r_ros.core.backends.sift import SiftBackend
from mast3r_ros.core.config import LocalizerConfig, SlamConfig, tracking_pipeline
from mast3r_ros.core.errors import InputError, MapError
from mast3r_ros.core.localizer import Localizer
from mast3r_ros.core.map import load_map
from mast3r_ros.core.slam import GraphError, PoseGraphMapper, StreamError
from mast3r_ros.core.slam.evaluation import (
    false_loop_edges,
    interleave_edges,
    read_sequence,
    relocalize_queries,
    summarize_slam,
)
from mast3r_ros.core.tracking.stream import EdgeType, GraphEdge, KeyframeEvent


@pytest.fixture(scope="module")
def data(data_dir: Path) -> Path:
    return data_dir / "sevenscenes_redkitchen_rgbd"


@pytest.fixture(scope="module")
def sift() -> tuple[LocalizerConfig, SiftBackend]:
    loc = dataclasses.replace(tracking_pipeline(), backend="sift")
    return loc, SiftBackend(loc.sift)


@dataclass(frozen=True)
class Stream:
    """The front end's output: stream items in order and GT per keyframe id."""

    items: list            # KeyframeEvent | GraphEdge, in stream order
    gt: dict[int, np.ndarray]


def tracked(frames: list, sift: tuple) -> Stream:
    return Stream(*front_end_stream(frames, *sift))


def run_mapper(items: list, sift: tuple) -> tuple[PoseGraphMapper, float]:
    return run_back_end(items, *sift)


@pytest.fixture(scope="module")
def out_and_back_stream(data: Path, sift) -> Stream:
    return tracked(read_sequence(data, 1, "0:66:2,65:0:-2"), sift)


@pytest.fixture(scope="module")
def out_and_back(out_and_back_stream: Stream, sift) -> tuple[PoseGraphMapper, dict, dict]:
    mapper, t = run_mapper(out_and_back_stream.items, sift)
    gt = out_and_back_stream.gt
    return mapper, summarize_slam(mapper, gt, 66, t)[0], gt


def test_out_and_back_closes_loops_without_false_ones(out_and_back) -> None:
    s = out_and_back[1]
    assert s["frames"] == 66 and 20 <= s["keyframes"] < 66  # the tracker's keyframe rule
    assert s["false_loops"] == 0
    assert s["loops_accepted"] >= 1
    assert s["ate_cm_slam"] <= s["ate_cm_odometry"]
    assert s["ate_cm_slam"] <= 4.0


def test_injected_false_loops_are_never_accepted(out_and_back_stream, out_and_back, sift) -> None:
    extra = false_loop_edges(out_and_back_stream.gt, 5, np.random.default_rng(0))
    assert {e.type for e in extra} == {EdgeType.LOOP, EdgeType.LOOP_CANDIDATE}
    mapper, t = run_mapper(interleave_edges(out_and_back_stream.items, extra), sift)
    s = summarize_slam(mapper, out_and_back_stream.gt, 66, t)[0]
    claimed = {(e.from_id, e.to_id) for e in extra}
    refused = [c for c in mapper.loop_checks if (c.candidate_id, c.query_id) in claimed]
    assert len(refused) == 5 and not any(c.accepted for c in refused)
    assert s["false_loops"] == 0
    assert abs(s["ate_cm_slam"] - out_and_back[1]["ate_cm_slam"]) <= 0.5


@pytest.fixture(scope="module")
def relocalization(data: Path, sift, tmp_path_factory) -> dict:
    frames = read_sequence(data, stride=2)
    stream = tracked(frames, sift)
    mapper, t = run_mapper(stream.items, sift)
    summary, S = summarize_slam(mapper, stream.gt, len(frames), t)
    path = mapper.save(tmp_path_factory.mktemp("slam") / "map")
    loc = Localizer(sift[0], load_map(path), sift[1])
    return {**summary, **relocalize_queries(loc, data, S, {f.number for f in frames})}


def test_relocalization_in_the_slam_map_localizes_every_query(relocalization) -> None:
    r = relocalization
    assert r["reloc_queries"] == 33  # stride 2 uses exactly the map frames: every query counts
    assert r["reloc_localized"] == r["reloc_queries"]
    assert r["reloc_median_cm"] <= 4.0


@pytest.mark.xfail(strict=True, reason="target missed (issue 14 note): positions fit GT (median "
                   "3.1 cm) but orientations do not (median 5.0 deg, recall@5cm5deg 0.45). The "
                   "position-only SE(3) alignment is ill-conditioned on this 1.7 x 0.4 x 0.7 m "
                   "path with 3.5 cm ATE (rotation-aware alignments move it by up to 4 deg), and no "
                   "single alignment gives both: keyframe orientations reach 1.3 deg only when "
                   "positions are 14 cm off. Single-keyframe PnP edges carry 0.7 deg / 2.2 cm "
                   "(0.67 s) to 1.8 deg / 6 cm (loops) of error vs the KinectFusion GT; loop "
                   "weights, robust kernel and more loop candidates do not change it. Needs a "
                   "keyframe bundle adjustment, not a pose graph.")
def test_relocalization_rotation_and_recall_targets(relocalization) -> None:
    assert relocalization["reloc_median_deg"] <= 2.0
    assert relocalization["reloc_recall_5cm5deg"] >= 0.8


# ---------------------------------------------------------------------------------- bad input
@pytest.fixture()
def started(out_and_back_stream, sift) -> PoseGraphMapper:
    """A mapper that has taken the first three keyframes and their two edges."""
    mapper = PoseGraphMapper(SlamConfig(), *sift)
    for it in out_and_back_stream.items[:5]:
        mapper.add_keyframe(it) if isinstance(it, KeyframeEvent) else mapper.add_edge(it)
    return mapper


def _snapshot(m: PoseGraphMapper) -> tuple:
    return (m.graph.ids, len(m.graph.edges), len(m.map), m.graph.pose(2).copy())


def test_bad_edges_raise_typed_errors_and_lose_nothing(started, out_and_back_stream) -> None:
    before = _snapshot(started)
    good: GraphEdge = dataclasses.replace(out_and_back_stream.items[6])  # 2 -> 3, not yet given
    bad_info = good.information.copy()
    object.__setattr__(good, "information", bad_info)  # arrays can be mutated after checks
    bad_info[0, 0] = np.nan
    with pytest.raises(InputError, match="finite"):
        started.add_edge(good)
    bad_info[0, 0] = -1.0
    with pytest.raises(InputError, match="symmetric|positive definite"):
        started.add_edge(good)
    with pytest.raises(GraphError, match="unknown node"):
        started.add_edge(dataclasses.replace(out_and_back_stream.items[4], to_id=99))
    late = dataclasses.replace(out_and_back_stream.items[4], stamp=-5.0)
    with pytest.raises(StreamError, match="out of order"):
        started.add_edge(late)
    assert _snapshot(started)[:3] == before[:3] and np.allclose(_snapshot(started)[3], before[3])


def test_out_of_order_keyframes_and_unwritable_paths_lose_nothing(started, out_and_back_stream,
                                                                  tmp_path) -> None:
    before = _snapshot(started)
    ev: KeyframeEvent = out_and_back_stream.items[5]  # keyframe 3
    old = dataclasses.replace(ev, keyframe=dataclasses.replace(ev.keyframe, stamp=-1.0))
    with pytest.raises(StreamError, match="out of order"):
        started.add_keyframe(old)
    with pytest.raises(StreamError, match="already"):
        started.add_keyframe(out_and_back_stream.items[0])
    (tmp_path / "file").write_text("x")
    with pytest.raises(MapError):
        started.save(tmp_path / "file" / "map")
    assert _snapshot(started)[:3] == before[:3]
    started.add_keyframe(ev)                    # the stream goes on
    started.add_edge(out_and_back_stream.items[6])
    assert started.graph.is_estimated(3)
    saved = started.save(tmp_path / "map")      # and saving elsewhere works
    assert load_map(saved).ids == [0, 1, 2, 3]


def test_eval_writes_the_before_after_plot(out_and_back, tmp_path) -> None:
    from mast3r_ros.cli.eval_slam import plot_trajectories

    plot_trajectories(out_and_back[0], out_and_back[2], tmp_path / "t.png")
    assert (tmp_path / "t.png").stat().st_size > 10_000
