"""MASt3R backend: encoder once per image, batched decoder over the top-k keyframes, FRM matching.

* Keyframes are encoded once (``prepare_map``); the encoder tokens are cached in the map
  (``features[id] = {"feat": (N, C) float32, "true_shape": (2,) int64}``) together with the map's
  ``MapMeta.model_id`` (sha256 of the checkpoint) and ``image_size``: a map built with another model
  or preprocessing is refused (:class:`MapCompatibilityError`).
* Global descriptor: the engine's L2-normalised mean of the encoder tokens (training-free, no second
  network pass).
* A query is preprocessed + encoded once and cached for the frame object (identity) between
  :meth:`global_descriptor` and :meth:`match`; the decoder runs once per group of same-shaped
  keyframes; matches are mapped back to the original pixels with the preprocessing transforms.
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from mast3r_ros.core.config import LocalizerConfig, MatchingConfig
from mast3r_ros.core.errors import CheckpointError, MapCompatibilityError
from mast3r_ros.core.geometry.scale import estimate_focal, intrinsics_from_focal
from mast3r_ros.core.map.keyframe import Keyframe, KeyframeMap, MapMeta
from mast3r_ros.core.types import Frame, Matches

__all__ = ["Mast3rBackend", "checkpoint_id", "PREPROCESSING", "DESCRIPTOR"]

logger = logging.getLogger(__name__)

#: preprocessing recorded in MapMeta (official resize long side + centred crop to multiples of 16)
PREPROCESSING = "dust3r-resize-crop16-v1"
#: global descriptor recorded in MapMeta
DESCRIPTOR = "mast3r-encoder-mean-v1"


def checkpoint_id(path: Path) -> str:
    """sha256 of a checkpoint file (or of the sorted files of a Hugging Face directory)."""
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    h = hashlib.sha256()
    for f in files:
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                h.update(chunk)
    return h.hexdigest()


class _Encoded:
    """Cached encoding of one image: the image it belongs to, tokens and preprocessing transform."""

    def __init__(self, rgb: np.ndarray, enc, transform) -> None:
        self.rgb, self.enc, self.transform = rgb, enc, transform


class Mast3rBackend:
    """Matcher backend running the MASt3R network (see the module docstring).

    Args:
        engine: :class:`mast3r_ros.core.model.InferenceEngine` holding the model.
        model_id: checkpoint identity (sha256).
        image_size: network input long side.
        matching: FRM / confidence filtering settings.
    """

    name = "mast3r"
    descriptor_name = DESCRIPTOR

    def __init__(self, engine, model_id: str, image_size: int, matching: MatchingConfig) -> None:
        self.engine, self.model_id, self.image_size, self.cfg = engine, model_id, image_size, matching
        self.expected_meta = MapMeta(model_id=model_id, image_size=image_size,
                                     preprocessing=PREPROCESSING)
        self.timings: dict[str, float] = {}
        self._kf: dict[int, _Encoded] = {}
        self._query: Optional[tuple[Frame, _Encoded]] = None
        self._query_pts: Optional[tuple[Frame, np.ndarray]] = None  # (frame, (h, w, 3) net pts3d)

    @classmethod
    def from_config(cls, config: LocalizerConfig) -> "Mast3rBackend":
        """Load the checkpoint of ``config.model`` (or ``$MAST3R_CHECKPOINT``).

        Raises:
            CheckpointError: no checkpoint configured, missing or invalid file.
        """
        from mast3r_ros.core.model import InferenceEngine, load_model, resolve_device

        path = config.model.checkpoint or os.environ.get("MAST3R_CHECKPOINT", "")
        if not path:
            raise CheckpointError("backend 'mast3r' needs a checkpoint: set model.checkpoint or "
                                  "$MAST3R_CHECKPOINT (MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_"
                                  "metric.pth); use backend 'sift' only for the classical baseline")
        device = resolve_device(config.model.device)
        model = load_model(path, device)
        p = Path(os.path.expanduser(path))
        model_id = checkpoint_id(p) if p.exists() else str(path)
        engine = InferenceEngine(model, device, config.model.precision)
        return cls(engine, model_id, config.model.image_size, config.matching)

    # ----------------------------------------------------------------------------- encoding
    def _encode(self, rgb: np.ndarray) -> _Encoded:
        from mast3r_ros.core.model import preprocess_image

        pre = preprocess_image(rgb, self.image_size)
        return _Encoded(rgb, self.engine.encode(pre.tensor), pre.transform)

    def _keyframe(self, kf: Keyframe) -> _Encoded:
        cached = self._kf.get(kf.id)
        if cached is None or cached.rgb is not kf.rgb:
            cached = self._encode(kf.rgb)
            self._kf[kf.id] = cached
        return cached

    def _from_features(self, kf: Keyframe, feats: dict[str, np.ndarray]) -> Optional[_Encoded]:
        from mast3r_ros.core.model import EncodedImages, preprocess_image
        from mast3r_ros.core.model.blocks import grid_positions

        if "feat" not in feats or "true_shape" not in feats:
            return None
        h, w = (int(v) for v in feats["true_shape"])
        feat = torch.from_numpy(np.asarray(feats["feat"], dtype=np.float32))[None]
        pos = grid_positions(1, h // 16, w // 16, torch.device("cpu"))
        try:
            enc = EncodedImages(feat, pos, (h, w)).to(self.engine.device)
        except Exception:  # wrong shapes: recompute
            return None
        transform = preprocess_image(kf.rgb, self.image_size).transform
        if transform.net_size != (w, h):
            return None
        return _Encoded(kf.rgb, enc, transform)

    def prepare_map(self, kmap: KeyframeMap) -> None:
        """Use the map's cached encoder features (same model) or encode every keyframe once.

        Raises:
            MapCompatibilityError: the map's cached data come from another model/preprocessing.
        """
        from mast3r_ros.core.map.store import check_compatible

        check_compatible(kmap.meta, self.expected_meta)
        if kmap.meta.model_id and kmap.meta.model_id != self.model_id:  # pragma: no cover
            raise MapCompatibilityError("map built with another model")
        reuse = kmap.meta.model_id == self.model_id
        self._kf, n_cached = {}, 0
        for kf in kmap.keyframes:
            enc = self._from_features(kf, kmap.features.get(kf.id, {})) if reuse else None
            n_cached += enc is not None
            self._kf[kf.id] = enc if enc is not None else self._encode(kf.rgb)
            kmap.features[kf.id] = {
                "feat": self._kf[kf.id].enc.feat[0].float().cpu().numpy(),
                "true_shape": np.array(self._kf[kf.id].enc.true_shape, dtype=np.int64)}
        logger.info("mast3r: %d keyframes, %d encodings from the map cache", len(kmap), n_cached)
        if len(kmap):
            descs = [self.engine.global_descriptor(self._kf[kf.id].enc)[0].cpu().numpy()
                     for kf in kmap.keyframes]
            kmap.global_desc = np.stack(descs).astype(np.float32)
        kmap.meta = kmap.meta.replace(model_id=self.model_id, backend=self.name,
                                      image_size=self.image_size, preprocessing=PREPROCESSING,
                                      descriptor=self.descriptor_name)

    def _query_enc(self, frame: Frame) -> _Encoded:
        if self._query is None or self._query[0] is not frame:
            t0 = time.perf_counter()
            self._query = (frame, self._encode(frame.rgb))
            self.timings["encode"] = time.perf_counter() - t0
        return self._query[1]

    def global_descriptor(self, frame: Frame) -> np.ndarray:
        self.timings = {}
        enc = self._query_enc(frame)
        return self.engine.global_descriptor(enc.enc)[0].cpu().numpy().astype(np.float32)

    # ----------------------------------------------------------------------------- matching
    def _pair_matches(self, q: _Encoded, r: _Encoded, out_q, out_r, i: int, kf_id: int) -> Matches:
        from mast3r_ros.core.matching import fast_reciprocal_nn

        xy1, xy2 = fast_reciprocal_nn(out_q.desc[i], out_r.desc[i], subsample=self.cfg.subsample,
                                      max_iter=self.cfg.max_iter)
        c1 = out_q.desc_conf[i][xy1[:, 1], xy1[:, 0]]
        c2 = out_r.desc_conf[i][xy2[:, 1], xy2[:, 0]]
        score = torch.minimum(c1, c2).float()
        keep = score >= self.cfg.desc_conf_threshold
        xy1, xy2, score = xy1[keep], xy2[keep], score[keep]
        xy_q = q.transform.to_original(xy1.cpu().numpy())
        xy_r = r.transform.to_original(xy2.cpu().numpy())
        score_np = score.cpu().numpy().astype(np.float64)
        if self.cfg.coarse_to_fine and max(*q.rgb.shape[:2], *r.rgb.shape[:2]) > self.image_size:
            xy_q, xy_r, score_np = self._refine(q, r, xy_q, xy_r, score_np)
        if score_np.size > self.cfg.max_matches:
            top = np.argsort(-score_np, kind="stable")[: self.cfg.max_matches]
            xy_q, xy_r, score_np = xy_q[top], xy_r[top], score_np[top]
        return Matches(xy_q, xy_r, score_np, kf_id)

    def _refine(self, q: _Encoded, r: _Encoded, xy_q: np.ndarray, xy_r: np.ndarray,
                score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coarse-to-fine: re-match full-resolution crops chosen from the coarse matches.

        Args:
            q, r: query and keyframe encodings (their ``rgb`` is the full-resolution image).
            xy_q, xy_r: (N, 2) coarse matches in original pixels; ``score`` (N,) their confidence.

        Returns:
            (xy_q, xy_r, score) refined in original pixels, or the coarse ones when no crop pair
            holds enough coarse matches.
        """
        from mast3r_ros.core.matching import coarse_to_fine_match

        t0 = time.perf_counter()
        res = coarse_to_fine_match(self.engine, q.rgb, r.rgb, size=self.image_size,
                                   subsample=self.cfg.subsample, overlap=self.cfg.c2f_overlap,
                                   max_crop_pairs=self.cfg.c2f_max_crop_pairs,
                                   coarse=(xy_q, xy_r),
                                   conf_threshold=self.cfg.desc_conf_threshold)
        self.timings["coarse_to_fine"] = (self.timings.get("coarse_to_fine", 0.0)
                                          + time.perf_counter() - t0)
        if not res.refined:
            return xy_q, xy_r, score
        return res.xy_q, res.xy_r, res.conf.astype(np.float64)

    def match(self, frame: Frame, keyframes: Sequence[Keyframe]) -> list[Matches]:
        """Decode the query against the keyframes (batched per image shape) and run FRM."""
        from mast3r_ros.core.model import EncodedImages

        q = self._query_enc(frame)
        need_pts = frame.K is None or not all(kf.has_3d for kf in keyframes)
        heads = ("pts3d", "desc") if need_pts else ("desc",)
        refs = [self._keyframe(kf) for kf in keyframes]
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(refs):
            groups.setdefault(r.enc.true_shape, []).append(i)
        out: list[Optional[Matches]] = [None] * len(keyframes)
        t_dec = t_match = 0.0
        self._query_pts = None
        for idx in groups.values():
            t0 = time.perf_counter()
            out_q, out_r = self.engine.decode(q.enc, EncodedImages.concat([refs[i].enc for i in idx]),
                                              heads=heads)
            t1 = time.perf_counter()
            for j, i in enumerate(idx):
                out[i] = self._pair_matches(q, refs[i], out_q, out_r, j, keyframes[i].id)
            if need_pts and (self._query_pts is None or 0 in idx):
                j0 = idx.index(0) if 0 in idx else 0
                self._query_pts = (frame, out_q.pts3d[j0].float().cpu().numpy())
            t_dec += t1 - t0
            t_match += time.perf_counter() - t1
        self.timings["decode"] = t_dec
        self.timings["matching"] = t_match
        return [m for m in out if m is not None]

    # ----------------------------------------------------------------------------- geometry
    def estimate_intrinsics(self, frame: Frame) -> Optional[np.ndarray]:
        """K of the original query image from the query pointmap (centred principal point)."""
        if self._query_pts is None or self._query_pts[0] is not frame or self._query is None:
            return None
        pts, tr = self._query_pts[1], self._query[1].transform
        pp = tr.to_network(np.array([[(frame.width - 1) / 2.0, (frame.height - 1) / 2.0]]))[0]
        f_net = estimate_focal(pts, pp=(float(pp[0]), float(pp[1])))
        if not np.isfinite(f_net) or f_net <= 0:
            return None
        return intrinsics_from_focal(f_net / float(np.mean(tr.scale)), frame.width, frame.height)

    def query_depth(self, frame: Frame, xy: np.ndarray) -> Optional[np.ndarray]:
        """Metric depth of original query pixels from the query pointmap (nearest net pixel)."""
        if self._query_pts is None or self._query_pts[0] is not frame or self._query is None:
            return None
        pts = self._query_pts[1]
        net = np.rint(self._query[1].transform.to_network(xy)).astype(np.int64)
        h, w = pts.shape[:2]
        ok = (net[:, 0] >= 0) & (net[:, 0] < w) & (net[:, 1] >= 0) & (net[:, 1] < h)
        z = np.full(net.shape[0], np.nan)
        z[ok] = pts[net[ok, 1], net[ok, 0], 2]
        return z
