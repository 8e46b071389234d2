"""Pairwise stage of the sparse global alignment: network outputs and matches per image pair.

Each image is encoded once; for a pair (i, j) the decoder + heads run in both directions (i as the
first view, then j), giving i and j in i's frame and j and i in j's frame with confidences and
descriptors. Matches: fast reciprocal NN in both directions on both decodings, merged (unique,
sorted by the flat index in i, then in j), confidence ``sqrt(descconf_i * descconf_j)``.

Results are cached on disk, content-addressed: the file name is a hash of both images' pixel data,
the model id and the matching settings, so a cache directory can be shared between runs (or
machines: the pairwise stage is embarrassingly parallel) and a re-run skips the network. Writes are
atomic (temporary file + rename).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import Callable, Optional, Sequence

import numpy as np
import torch

from mast3r_ros.core.errors import InputError, MapError
from mast3r_ros.core.mapping.canonical import PairData

__all__ = ["image_key", "PairCache", "unique_pairs", "match_symmetric", "infer_pair",
           "compute_pairs"]

logger = logging.getLogger(__name__)
CACHE_VERSION = "pairs-v1"
_FIELDS = ("X_i_in_i", "C_i", "X_j_in_i", "C_j_in_i", "X_j_in_j", "C_j", "X_i_in_j", "C_i_in_j",
           "xy_i", "xy_j", "conf", "score")
_SWAP = {"X_i_in_i": "X_j_in_j", "C_i": "C_j", "X_j_in_i": "X_i_in_j", "C_j_in_i": "C_i_in_j",
         "xy_i": "xy_j"}
_SWAP.update({v: k for k, v in _SWAP.items()})


def image_key(img: torch.Tensor) -> str:
    """Content hash of a normalised network image (1, 3, H, W): shape + float32 bytes."""
    a = np.ascontiguousarray(img.detach().cpu().numpy().astype(np.float32))
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


def unique_pairs(pairs: Sequence[tuple[int, int]]) -> list[tuple[int, int]]:
    """Unordered pairs in order of first appearance, each in its first orientation."""
    seen: set[frozenset] = set()
    out = []
    for i, j in pairs:
        if i == j:
            raise InputError(f"pair ({i}, {j}) pairs an image with itself")
        if frozenset((i, j)) not in seen:
            seen.add(frozenset((i, j)))
            out.append((int(i), int(j)))
    return out


class PairCache:
    """On-disk, content-addressed cache of :class:`PairData` (one ``.npz`` per unordered pair).

    Args:
        root: cache directory (created on first write).
        model_id: identifies the network weights (e.g. checkpoint hash); part of every key.
        subsample: FRM seed step; part of every key.
    """

    def __init__(self, root: str | Path, model_id: str, subsample: int) -> None:
        self.root = Path(root)
        self.tag = f"{CACHE_VERSION}|{model_id}|s{subsample}"

    def path(self, key_i: str, key_j: str) -> Path:
        name = hashlib.sha256(f"{self.tag}|{key_i}|{key_j}".encode()).hexdigest()[:40]
        return self.root / "pairs" / name[:2] / f"{name}.npz"

    def load(self, i: int, j: int, key_i: str, key_j: str) -> Optional[PairData]:
        """The cached pair in orientation (i, j) (either stored orientation), or None."""
        for swap, p in ((False, self.path(key_i, key_j)), (True, self.path(key_j, key_i))):
            if not p.is_file():
                continue
            try:
                with np.load(p) as z:
                    d = {k: z[k] for k in _FIELDS}
            except (OSError, ValueError, KeyError) as exc:
                logger.warning("ignoring unreadable cache file %s (%s)", p, exc)
                continue
            if swap:
                d = {(_SWAP.get(k, k)): v for k, v in d.items()}
            return PairData(i=i, j=j, **d)
        return None

    def save(self, pd: PairData, key_i: str, key_j: str) -> Path:
        """Write atomically; returns the file path."""
        p = self.path(key_i, key_j)
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                np.savez(f, **{k: getattr(pd, k) for k in _FIELDS})
            os.replace(tmp, p)
        except OSError as exc:
            raise MapError(f"cannot write the pairwise cache {p}: {exc}; check the cache_dir "
                           "permissions and free space") from exc
        return p


def match_symmetric(desc: Sequence[torch.Tensor], qconf: Sequence[torch.Tensor], subsample: int
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Merged reciprocal matches of both decodings.

    Args:
        desc: (d_ii, d_ji, d_jj, d_ij) descriptors (H, W, D): i and j from the decoding with i
            first, then j and i from the decoding with j first.
        qconf: the matching descriptor confidences (H, W).

    Returns:
        xy_i (n, 2) int64, xy_j (n, 2) int64, conf (n,) float32, sorted by flat index in i then j.
    """
    from mast3r_ros.core.matching import fast_reciprocal_nn

    d_ii, d_ji, d_jj, d_ij = desc
    q_ii, q_ji, q_jj, q_ij = (q.detach().float().cpu().reshape(-1) for q in qconf)
    (hi, wi), (hj, wj) = d_ii.shape[:2], d_jj.shape[:2]
    idx_i, idx_j, c_i, c_j = [], [], [], []
    for a, b, qa, qb in ((d_ii, d_ji, q_ii, q_ji), (d_ij, d_jj, q_ij, q_jj)):
        x1, x2 = fast_reciprocal_nn(a, b, subsample=subsample, dist="dot")
        y2, y1 = fast_reciprocal_nn(b, a, subsample=subsample, dist="dot")
        fi = torch.cat((x1[:, 1] * wi + x1[:, 0], y1[:, 1] * wi + y1[:, 0])).cpu()
        fj = torch.cat((x2[:, 1] * wj + x2[:, 0], y2[:, 1] * wj + y2[:, 0])).cpu()
        idx_i.append(fi)
        idx_j.append(fj)
        c_i.append(qa[fi])
        c_j.append(qb[fj])
    fi, fj = torch.cat(idx_i).numpy(), torch.cat(idx_j).numpy()
    _, first = np.unique(fi.astype(np.int64) * (hj * wj) + fj, return_index=True)
    conf = torch.sqrt(torch.cat(c_i) * torch.cat(c_j)).numpy()[first].astype(np.float32)
    fi, fj = fi[first], fj[first]
    xy_i = np.stack((fi % wi, fi // wi), 1).astype(np.int64)
    xy_j = np.stack((fj % wj, fj // wj), 1).astype(np.int64)
    return xy_i, xy_j, conf


def infer_pair(engine, enc_i, enc_j, i: int, j: int, subsample: int = 8) -> PairData:
    """Network outputs of both decodings + merged matches for the pair (i, j).

    Args:
        engine: an :class:`~mast3r_ros.core.model.InferenceEngine`.
        enc_i, enc_j: ``EncodedImages`` (batch 1) of both images.
    """
    heads = ("pts3d", "desc")
    o_ii, o_ji = engine.decode(enc_i, enc_j, heads=heads)
    o_jj, o_ij = engine.decode(enc_j, enc_i, heads=heads)
    desc = [o.desc[0] for o in (o_ii, o_ji, o_jj, o_ij)]
    qconf = [o.desc_conf[0] for o in (o_ii, o_ji, o_jj, o_ij)]
    xy_i, xy_j, conf = match_symmetric(desc, qconf, subsample)
    C = [o.conf[0].float() for o in (o_ii, o_ji, o_jj, o_ij)]
    mean_score = float(torch.stack([c.mean() for c in C]).prod().sqrt().sqrt())
    np_ = lambda t: t.detach().float().cpu().numpy()  # noqa: E731
    return PairData(i=i, j=j, X_i_in_i=np_(o_ii.pts3d[0]), C_i=np_(C[0]),
                    X_j_in_i=np_(o_ji.pts3d[0]),
                    C_j_in_i=np_(C[1]), X_j_in_j=np_(o_jj.pts3d[0]), C_j=np_(C[2]),
                    X_i_in_j=np_(o_ij.pts3d[0]), C_i_in_j=np_(C[3]), xy_i=xy_i, xy_j=xy_j,
                    conf=conf, score=np.array([mean_score, float(conf.sum()), len(conf)]))


def compute_pairs(engine, images: Sequence[torch.Tensor], pairs: Sequence[tuple[int, int]],
                  subsample: int = 8, cache: Optional[PairCache] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> list[PairData]:
    """Pairwise stage over a scene graph.

    Args:
        engine: inference engine.
        images: normalised network images (1, 3, H, W), one per image index.
        pairs: scene-graph pairs (symmetrised or not); each unordered pair runs once.
        subsample: FRM seed step.
        cache: optional :class:`PairCache`; hits skip the network entirely.
        progress: called with (done, total) after each pair.

    Returns:
        One :class:`PairData` per unordered pair, in order of first appearance.
    """
    todo = unique_pairs(pairs)
    for i, j in todo:
        if not (0 <= i < len(images) and 0 <= j < len(images)):
            raise InputError(f"pair ({i}, {j}) refers to an image outside [0, {len(images)})")
    keys = [image_key(im) for im in images] if cache is not None else []
    encoded: dict[int, object] = {}
    out, hits = [], 0
    for n, (i, j) in enumerate(todo):
        pd = cache.load(i, j, keys[i], keys[j]) if cache is not None else None
        if pd is None:
            for k in (i, j):
                if k not in encoded:
                    encoded[k] = engine.encode(images[k])
            pd = infer_pair(engine, encoded[i], encoded[j], i, j, subsample)
            if cache is not None:
                cache.save(pd, keys[i], keys[j])
        else:
            hits += 1
        out.append(pd)
        if progress is not None:
            progress(n + 1, len(todo))
    logger.info("pairwise stage: %d pairs, %d from cache, %d images encoded", len(todo), hits,
                len(encoded))
    return out
