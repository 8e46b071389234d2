"""Benchmark of the keyframe map store (schema 2) on maps of replicated demo keyframes.

Maps: the 4 first demo keyframes (7-Scenes redkitchen, resized by ``--scale``) replicated with
perturbed poses into maps of ``--sizes`` keyframes, built by incremental saves of 1,000. The SIFT
map stores real OpenCV SIFT features; the MASt3R map stores one 1024-channel fp16 token per
keyframe (the stored token count does not enter any figure below) and random unit 1024-d
descriptors.

1. ``KeyframeMap.add`` of one keyframe with a real-size encoding (SIFT: 8000 features of a
   640x480 frame; MASt3R: 768 x 1024 float32 tokens) into the largest map opened from disk;
   median over ``--adds`` adds after a warm-up; baseline: the same adds into an empty map. Wall
   and process-CPU times are both reported (the CPU time is robust to a loaded machine).
2. ``load_map`` of each map: median of ``--runs`` after a warm-up; baseline: reading the same
   SQLite rows and descriptor file without any validation.
3. Host RSS in a fresh process at the default cache budget: after the imports, after opening the
   largest map, after touching a working set of 100 keyframes 3 times (payload + features), and
   after reading every keyframe once.
4. Reading one keyframe (image, depth, features) without cache, with vs without the hash checks.
5. Appending 10 keyframes to the largest map (median of 3) vs a full save of it elsewhere.

Usage: ``python -m benchmarks.bench_map_store [--sizes 1000,10000] [--scale 0.5]
[--workdir DIR] [--threads 1]``; prints one JSON line. Needs about 0.6 MB of disk per keyframe
and map at scale 0.5 (twice that for the largest SIFT map, for the full-save copy).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import report
from mast3r_ros.core.features import EncoderId, Mast3rFeatures, SiftFeatures
from mast3r_ros.core.map import Keyframe, KeyframeMap, MapMeta, load_map, save_map
from mast3r_ros.core.map.format import INDEX
from mast3r_ros.core.map.rgbd import build_map_from_rgbd
from mast3r_ros.core.retrieval.descriptors import tiny_image_descriptor
from mast3r_ros.core.retrieval.index import l2_normalize
from mast3r_ros.core.types import Encoding

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "demo_data" / "sevenscenes_redkitchen"
SIFT = EncoderId("sift", "opencv-sift-n8000", 0, "", "tiny-grad-v1", SiftFeatures.KIND)
MAST3R = EncoderId("mast3r", "sha256:bench", 512, "dust3r-resize-crop16-v1",
                   "mast3r-encoder-mean-v1", Mast3rFeatures.KIND)


def _sift(rgb: np.ndarray, n: int = 8000) -> SiftFeatures:
    import cv2

    pts, desc = cv2.SIFT_create(n).detectAndCompute(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), None)
    return SiftFeatures(np.array([p.pt for p in pts], np.float64).reshape(-1, 2),
                        np.zeros((0, 128), np.float32) if desc is None else desc)


def _keyframes(scale: float) -> list[Keyframe]:
    import cv2

    out = []
    for kf in build_map_from_rgbd(DEMO, max_frames=4).keyframes():
        w, h = int(kf.width * scale), int(kf.height * scale)
        S = np.diag([w / kf.width, h / kf.height, 1.0])
        out.append(Keyframe(kf.id, cv2.resize(kf.rgb, (w, h), interpolation=cv2.INTER_AREA),
                            S @ kf.K, kf.T_map_cam, kf.stamp,
                            cv2.resize(kf.depth, (w, h), interpolation=cv2.INTER_NEAREST)))
    return out


def _replica(base: Keyframe, kid: int, rng: np.random.Generator) -> Keyframe:
    T = base.T_map_cam.copy()
    T[:3, 3] += rng.normal(scale=0.5, size=3) + [10.0 * (kid // 4 % 100), 0.0, 0.0]
    return Keyframe(kid, base.rgb, base.K, T, kid / 30.0, base.depth)


def _stored_encoding(kind: str, kf: Keyframe, sift: SiftFeatures, rng: np.random.Generator
                     ) -> Encoding:
    if kind == "sift":
        return Encoding(SIFT, kf.width, kf.height, tiny_image_descriptor(kf.rgb), sift)
    tokens = torch.from_numpy(rng.normal(size=(1, 1024)).astype(np.float32))
    return Encoding(MAST3R, kf.width, kf.height, l2_normalize(rng.normal(size=1024)),
                    Mast3rFeatures(tokens, (16, 16)))


def build(path: Path, n: int, kind: str, kfs: list[Keyframe]) -> float:
    """Write a map of ``n`` replicated keyframes by incremental saves of 1,000; seconds."""
    rng = np.random.default_rng(0)
    sifts = [_sift(kf.rgb, 2000) for kf in kfs]
    t0 = time.perf_counter()
    kmap = KeyframeMap(MapMeta(source=f"bench {kind} x{n}"))
    save_map(kmap, path)
    for start in range(0, n, 1000):
        for kid in range(start, min(n, start + 1000)):
            kf = _replica(kfs[kid % 4], kid, rng)
            kmap.add(kf, _stored_encoding(kind, kf, sifts[kid % 4], rng))
        save_map(kmap, path)
    return time.perf_counter() - t0


def bench_add(path: Path, kind: str, adds: int) -> dict:
    """Median milliseconds (wall and process CPU) of one ``add`` into the map at ``path`` and
    into an empty map."""
    kf640 = build_map_from_rgbd(DEMO, max_frames=1).keyframe(0)
    rng = np.random.default_rng(1)
    if kind == "sift":
        enc = Encoding(SIFT, kf640.width, kf640.height, tiny_image_descriptor(kf640.rgb),
                       _sift(kf640.rgb))
    else:
        enc = Encoding(MAST3R, kf640.width, kf640.height, l2_normalize(rng.normal(size=1024)),
                       Mast3rFeatures(torch.randn(768, 1024), (384, 512)))
    out = {}
    for label, kmap in (("empty", KeyframeMap()), ("opened", load_map(path))):
        size = len(kmap)
        times, cpu = [], []
        for i in range(adds + 20):
            kf = _replica(kf640, 10_000_000 + i, rng)
            t0, c0 = time.perf_counter(), time.process_time()
            kmap.add(kf, enc)
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[label] = float(np.median(times[20:])) * 1e3
        out[f"{label}_cpu"] = float(np.median(cpu[20:])) * 1e3
        out[f"{label}_size"] = size
    return {"add_ms": out["opened"], "add_cpu_ms": out["opened_cpu"],
            "add_empty_ms": out["empty"], "add_empty_cpu_ms": out["empty_cpu"],
            "ratio_vs_empty": out["opened"] / out["empty"], "map_keyframes": out["opened_size"],
            "features_kb": enc.features.nbytes / 1024}


def bench_open(path: Path, runs: int) -> dict:
    """Median seconds (wall and process CPU) of ``load_map`` and of the raw reads it validates."""
    def raw() -> None:
        vdir = path / (path / "CURRENT").read_text().strip()
        con = sqlite3.connect(vdir / INDEX)
        for table in ("info", "encoder", "files", "keyframes"):
            con.execute(f"SELECT * FROM {table}").fetchall()
        con.close()
        (vdir / "data" / "desc.bin").read_bytes()

    out = {}
    for label, fn in (("load_map", lambda: load_map(path)), ("raw_rows", raw)):
        fn()
        times, cpu = [], []
        for _ in range(runs):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            times.append(time.perf_counter() - t0)
            cpu.append(time.process_time() - c0)
        out[f"{label}_s"] = float(np.median(times))
        out[f"{label}_cpu_s"] = float(np.median(cpu))
    out["ratio_vs_raw"] = out["load_map_s"] / out["raw_rows_s"]
    return out


_RSS_SCRIPT = """
import gc, json, sys
import numpy as np
from mast3r_ros.core.map import load_map
def rss():
    with open("/proc/self/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS")) / 1024
gc.collect(); r0 = rss()
kmap = load_map(sys.argv[1]); gc.collect(); r1 = rss()
ws = np.random.default_rng(0).choice(kmap.ids, 100, replace=False)
for _ in range(3):
    for kid in ws:
        kmap.keyframe(int(kid)); kmap.features(int(kid))
gc.collect(); r2 = rss()
for kid in kmap.ids:
    kmap.keyframe(kid); kmap.features(kid)
gc.collect(); r3 = rss()
print(json.dumps({"imports_mb": r0, "open_mb": r1 - r0, "working_set_mb": r2 - r0,
                  "after_reading_all_mb": r3 - r0, "cache_mb": kmap.source.cache.nbytes / 2**20,
                  "budget_mb": kmap.source.cache.budget / 2**20}))
"""


def bench_rss(path: Path) -> dict:
    """Host RSS deltas of a fresh process opening the map (default cache budget)."""
    out = subprocess.run([sys.executable, "-c", _RSS_SCRIPT, str(path)], capture_output=True,
                         text=True, check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_read(path: Path, reads: int) -> dict:
    """Median milliseconds of reading one keyframe (image, depth, features) from disk, without
    cache, with and without the SHA-256 checks (the page cache is warm after a first pass)."""
    from mast3r_ros.core.config import MapStoreConfig

    out = {}
    for verify in (True, False):
        kmap = load_map(path, config=MapStoreConfig(host_cache_bytes=0, verify_hashes=verify))
        ids = np.random.default_rng(3).choice(kmap.ids, reads, replace=False).tolist()
        times = []
        for r in range(2):
            for kid in ids:
                t0 = time.perf_counter()
                kmap.keyframe(kid)
                kmap.features(kid)
                if r:
                    times.append(time.perf_counter() - t0)
        out["verified_ms" if verify else "unverified_ms"] = float(np.median(times)) * 1e3
    out["hash_overhead"] = out["verified_ms"] / out["unverified_ms"]
    return out


def bench_append(path: Path, copy: Path, kfs: list[Keyframe]) -> dict:
    """Seconds of appending 10 keyframes (median of 3) vs a full save of the whole map."""
    rng = np.random.default_rng(2)
    sift = _sift(kfs[0].rgb, 2000)
    kmap = load_map(path)
    times = []
    for r in range(3):
        for i in range(10):
            kf = _replica(kfs[i % 4], 20_000_000 + 10 * r + i, rng)
            kmap.add(kf, _stored_encoding("sift", kf, sift, rng))
        t0 = time.perf_counter()
        save_map(kmap, path)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    save_map(load_map(path), copy)
    full = time.perf_counter() - t0
    return {"append10_s": float(np.median(times)), "full_save_s": full,
            "ratio_full_vs_append": full / float(np.median(times)),
            "map_keyframes": len(kmap), "map_gb": _du(path) / 1e9}


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000")
    ap.add_argument("--scale", type=float, default=0.5)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--adds", type=int, default=200)
    ap.add_argument("--workdir", type=Path, default=None)
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (the fp32 -> fp16 token conversion of a MASt3R add; "
                         "0 = leave as is)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(dir=args.workdir, prefix="bench_map_store-"))
    kfs = _keyframes(args.scale)
    res: dict = {"numpy": np.__version__, "sqlite": sqlite3.sqlite_version,
                 "cpu": platform.processor() or platform.machine(), "scale": args.scale,
                 "image": f"{kfs[0].width}x{kfs[0].height}", "open": {}, "build_s": {}}
    try:
        for kind in ("sift", "mast3r"):
            for n in sizes:
                path = work / f"{kind}-{n}"
                res["build_s"][f"{kind}-{n}"] = build(path, n, kind, kfs)
                res["open"][f"{kind}-{n}"] = bench_open(path, args.runs)
                res.setdefault("disk_mb_per_keyframe", {})[kind] = _du(path) / n / 2**20
                if n != sizes[-1]:
                    shutil.rmtree(path)
            res[f"add_{kind}"] = bench_add(work / f"{kind}-{sizes[-1]}", kind, args.adds)
        res["rss"] = bench_rss(work / f"sift-{sizes[-1]}")
        res["read_one_keyframe"] = bench_read(work / f"sift-{sizes[-1]}", 100)
        shutil.rmtree(work / f"mast3r-{sizes[-1]}")
        res["append"] = bench_append(work / f"sift-{sizes[-1]}", work / "copy", kfs)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report("map_store", res)


if __name__ == "__main__":
    main()
