"""Benchmark: keyframe retrieval at scale, exact flat search vs the approximate index we ship
(IVF + 8-bit scalar quantiser + exact re-ranking, :class:`GlobalIndex`) vs HNSW (the alternative).

Data model (stated, because recall depends on it): unit descriptors grouped in *places*, 10
keyframes around one random direction each (noise sigma / sqrt(D) per dimension), queries drawn
around a random place's direction: a query resembles the keyframes of the place it was taken in,
as a camera image resembles nearby map keyframes. Pure random unit vectors with no such structure
make "the 5 nearest" a random set that no index (nor a robot) can use.

Recall@k = |approximate top-k ∩ exact top-k| / k, averaged over queries; query time = median
over queries (after one warm-up search), single query at a time, ``torch``/faiss threads as set.

Usage::

    python -m benchmarks.bench_retrieval [--sizes 10000 100000] [--dim 1024] [--queries 300]
        [--hnsw]
"""

from __future__ import annotations

import argparse
import statistics
import time

import faiss
import numpy as np

from benchmarks.common import report
from mast3r_ros.core.config import RetrievalConfig
from mast3r_ros.core.retrieval import GlobalIndex


def _data(n: int, dim: int, n_queries: int, sigma: float, seed: int):
    rng = np.random.default_rng(seed)
    places = max(1, n // 10)
    C = rng.normal(size=(places, dim)).astype(np.float32)
    C /= np.linalg.norm(C, axis=1, keepdims=True)
    X = np.repeat(C, 10, 0)[:n] + (sigma / np.sqrt(dim) * rng.normal(size=(n, dim))).astype(
        np.float32)
    Q = C[rng.integers(0, places, n_queries)] + (sigma / np.sqrt(dim) * rng.normal(
        size=(n_queries, dim))).astype(np.float32)
    return X, Q


def _measure(search, Q: np.ndarray, exact: list[set], k: int) -> dict[str, float]:
    search(Q[0])
    times, hits = [], 0
    for q, want in zip(Q, exact):
        t0 = time.perf_counter()
        got = search(q)
        times.append(time.perf_counter() - t0)
        hits += len(set(int(i) for i in got) & want)
    return {"query_ms": 1000 * statistics.median(times), f"recall@{k}": hits / (k * len(Q))}


def run_size(n: int, dim: int, n_queries: int, k: int, hnsw: bool) -> dict:
    X, Q = _data(n, dim, n_queries, 0.5, seed=n)
    ids = list(range(n))
    t0 = time.perf_counter()
    flat = GlobalIndex(X, ids, approximate_above=10 ** 12)
    t_flat = time.perf_counter() - t0
    exact = [set(int(i) for i in flat.search(q, k)[0]) for q in Q]
    out = {"flat": {"build_s": t_flat, **_measure(lambda q: flat.search(q, k)[0], Q, exact, k)}}
    t0 = time.perf_counter()
    ivf = GlobalIndex(X, ids, approximate_above=0)
    t_ivf = time.perf_counter() - t0
    for nprobe in (8, RetrievalConfig.ivf_nprobe, 32):
        res = _measure(lambda q, p=nprobe: ivf.search(q, k, nprobe=p)[0], Q, exact, k)
        out[f"ivf_sq8_nprobe{nprobe}"] = {"build_s": t_ivf, **res}
    if hnsw:
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        Xn = X / np.linalg.norm(X, axis=1, keepdims=True)
        t0 = time.perf_counter()
        index.add(np.ascontiguousarray(Xn))
        t_h = time.perf_counter() - t0
        index.hnsw.efSearch = 64
        res = _measure(lambda q: index.search(
            np.ascontiguousarray((q / np.linalg.norm(q))[None].astype(np.float32)), k)[1][0],
            Q, exact, k)
        out["hnsw_m32_ef64"] = {"build_s": t_h, **res}
    base = out["flat"]["query_ms"]
    for v in out.values():
        v["time_ratio_vs_flat"] = v["query_ms"] / base
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--dim", type=int, default=1024)
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=5)
    ap.add_argument("--hnsw", action="store_true", help="also build HNSW (slow at 10^5)")
    args = ap.parse_args()
    results = {str(n): run_size(n, args.dim, args.queries, args.k, args.hnsw) for n in args.sizes}
    report("bench_retrieval", {"dim": args.dim, "queries": args.queries, "k": args.k,
                               "data": "places of 10 keyframes, sigma 0.5", "sizes": results})


if __name__ == "__main__":
    main()
