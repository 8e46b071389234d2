"""MASt3R backend: encoder once per image, batched decoder over the top-k keyframes, FRM matching.

* :meth:`Mast3rBackend.encode` preprocesses (official resize + crop), runs the encoder once and
  returns the tokens as :class:`~mast3r_ros.core.features.Mast3rFeatures` plus the engine's
  training-free global descriptor (L2-normalised mean token).
* :meth:`Mast3rBackend.match` decodes the query against the keyframes' stored tokens, one network
  call per group of same-shaped keyframes, runs fast reciprocal NN on the descriptors, keeps the
  matches whose two descriptor confidences reach the threshold, maps them back to original pixels
  with the preprocessing transforms (recomputed from the image sizes), optionally refines them
  coarse-to-fine on full-resolution crops, and (when asked) returns the query's predicted
  geometry: metric depth at query pixels and a K estimate from its pointmap.

Nothing is kept on the backend between calls; the engine (weights, device, precision) is shared.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable
from typing import Optional, Sequence

import numpy as np
import torch

from mast3r_ros.core.cache import ByteLRU
from mast3r_ros.core.config import MatchingConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.features import EncoderId, Mast3rFeatures
from mast3r_ros.core.geometry.scale import estimate_focal, intrinsics_from_focal
from mast3r_ros.core.matching.filtering import gather_confidence, is_confident, visloc_confidence
from mast3r_ros.core.model.blocks import grid_positions
from mast3r_ros.core.model.engine import EncodedImages, InferenceEngine
from mast3r_ros.core.model.mast3r import HeadOutput
from mast3r_ros.core.model.preprocess import (
    PREPROCESSING,
    ImageTransform,
    image_transform,
    preprocess_image,
)
from mast3r_ros.core.types import (
    Encoding,
    KeyframeEncoding,
    MatchResult,
    PairMatches,
    QueryGeometry,
    StageTimer,
)

__all__ = ["Mast3rBackend", "PREPROCESSING", "DESCRIPTOR"]

logger = logging.getLogger(__name__)

#: global descriptor of the encodings
DESCRIPTOR = "mast3r-encoder-mean-v1"


class Mast3rBackend:
    """Matcher backend running the MASt3R network (see the module docstring).

    Args:
        engine: the network on its device (from :func:`~mast3r_ros.core.model.make_engine`).
    """

    name = "mast3r"

    def __init__(self, engine: InferenceEngine) -> None:
        self.engine = engine
        self.encoder_id = EncoderId(self.name, engine.model_id, engine.image_size, PREPROCESSING,
                                    DESCRIPTOR, Mast3rFeatures.KIND)

    # ----------------------------------------------------------------------------- encoding
    def encode(self, rgb: np.ndarray) -> Encoding:
        """Preprocess and encode one image (``preprocess`` and ``encode`` timings)."""
        timer = StageTimer()
        with timer.stage("preprocess"):
            pre = preprocess_image(rgb, self.engine.image_size)
        with timer.stage("encode"):
            enc = self.engine.encode(pre.tensor)
            desc = self.engine.global_descriptor(enc)[0].cpu().numpy().astype(np.float32)
        feats = Mast3rFeatures(enc.feat[0], enc.true_shape)
        return Encoding(self.encoder_id, int(rgb.shape[1]), int(rgb.shape[0]), desc, feats,
                        timer.timings(total=False))

    def _device_tokens(self, enc: Encoding, key: Optional[Hashable],
                       cache: Optional[ByteLRU]) -> torch.Tensor:
        """(N, C) float32 tokens of an encoding on the engine's device (cached under ``key``)."""
        ck = (key, str(self.engine.device)) if key is not None and cache is not None else None
        tok = cache.get(ck) if cache is not None and ck is not None else None
        if tok is None:
            tok = _features(enc, self.encoder_id).tokens.to(self.engine.device, torch.float32)
            if cache is not None and ck is not None:
                cache.put(ck, tok, tok.numel() * tok.element_size())
        return tok

    def _tokens(self, encodings: Sequence[Encoding], keys: Sequence[Optional[Hashable]] = (),
                cache: Optional[ByteLRU] = None) -> EncodedImages:
        """Batch of same-shaped encodings as float32 tokens on the engine's device."""
        feats = [_features(e, self.encoder_id) for e in encodings]
        h, w = feats[0].true_shape
        keys = list(keys) or [None] * len(encodings)
        tok = torch.stack([self._device_tokens(e, k, cache) for e, k in zip(encodings, keys)])
        pos = grid_positions(len(feats), h // 16, w // 16, self.engine.device)
        return EncodedImages(tok, pos, (h, w))

    def _transform(self, enc: Encoding) -> ImageTransform:
        tr = image_transform(enc.width, enc.height, self.engine.image_size)
        if tuple(reversed(tr.net_size)) != _features(enc, self.encoder_id).true_shape:
            raise InputError(f"encoding of a {enc.width}x{enc.height} image does not have the "
                             f"network shape {tr.net_size[::-1]} of this backend")
        return tr

    # ----------------------------------------------------------------------------- matching
    def match(self, query: Encoding, refs: Sequence[KeyframeEncoding], config: MatchingConfig, *,
              geometry: bool = False, query_image: Optional[np.ndarray] = None,
              cache: Optional[ByteLRU] = None) -> MatchResult:
        """Decode the query against the keyframes (batched per image shape) and run FRM.

        See :meth:`~mast3r_ros.core.backends.base.MatcherBackend.match`.
        """
        timer = StageTimer()
        q_tr = self._transform(query)
        q_enc = self._tokens([query])
        heads = ("pts3d", "desc") if geometry else ("desc",)
        groups: dict[tuple[int, int], list[int]] = {}
        for i, r in enumerate(refs):
            groups.setdefault(_features(r.encoding, self.encoder_id).true_shape, []).append(i)
        pairs: list[Optional[PairMatches]] = [None] * len(refs)
        pts_q: Optional[np.ndarray] = None
        for idx in groups.values():
            with timer.stage("decode"):
                r_enc = self._tokens([refs[i].encoding for i in idx],
                                     [refs[i].cache_key for i in idx], cache)
                out_q, out_r = self.engine.decode(q_enc, r_enc, heads=heads)
            for j, i in enumerate(idx):
                pairs[i] = self._pair(query, q_tr, refs[i], out_q, out_r, j, config, query_image,
                                      timer)
            if geometry and (pts_q is None or 0 in idx):
                j0 = idx.index(0) if 0 in idx else 0
                assert out_q.pts3d is not None
                pts_q = out_q.pts3d[j0].float().cpu().numpy()
        geo = _query_geometry(pts_q, q_tr) if pts_q is not None else None
        return MatchResult([p for p in pairs if p is not None], geo, timer.timings(total=False))

    def _pair(self, query: Encoding, q_tr: ImageTransform, ref: KeyframeEncoding,
              out_q: HeadOutput, out_r: HeadOutput, j: int, cfg: MatchingConfig,
              query_image: Optional[np.ndarray], timer: StageTimer) -> PairMatches:
        """FRM + confidence filter of pair ``j`` of a decode, in original pixels."""
        from mast3r_ros.core.matching import fast_reciprocal_nn

        r_tr = self._transform(ref.encoding)
        assert out_q.desc is not None and out_r.desc is not None
        assert out_q.desc_conf is not None and out_r.desc_conf is not None
        with timer.stage("matching"):
            xy1, xy2 = fast_reciprocal_nn(out_q.desc[j], out_r.desc[j], subsample=cfg.subsample,
                                          max_iter=cfg.max_iter)
            score = visloc_confidence(gather_confidence(xy1, out_q.desc_conf[j]),
                                      gather_confidence(xy2, out_r.desc_conf[j])).float()
            keep = is_confident(score, cfg.desc_conf_threshold)
            xy_q = q_tr.to_original(xy1[keep].cpu().numpy())
            xy_r = r_tr.to_original(xy2[keep].cpu().numpy())
            score_np = score[keep].cpu().numpy().astype(np.float64)
        big = max(query.width, query.height, ref.encoding.width, ref.encoding.height)
        if cfg.coarse_to_fine and big > self.engine.image_size:
            if query_image is None or ref.image is None:
                logger.debug("coarse-to-fine skipped: full-resolution images not available")
            else:
                with timer.stage("coarse_to_fine"):
                    xy_q, xy_r, score_np = self._refine(query_image, ref.image(), xy_q, xy_r,
                                                        score_np, cfg)
        if score_np.size > cfg.max_matches:
            top = np.argsort(-score_np, kind="stable")[: cfg.max_matches]
            xy_q, xy_r, score_np = xy_q[top], xy_r[top], score_np[top]
        return PairMatches(ref.keyframe_id, xy_q, xy_r, score_np)

    def _refine(self, rgb_q: np.ndarray, rgb_r: np.ndarray, xy_q: np.ndarray, xy_r: np.ndarray,
                score: np.ndarray, cfg: MatchingConfig
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coarse-to-fine: re-match full-resolution crops chosen from the coarse matches.

        Args:
            rgb_q, rgb_r: full-resolution query and keyframe images (H, W, 3) uint8.
            xy_q, xy_r: (N, 2) coarse matches in original pixels; ``score`` (N,) their confidence.
            cfg: matching settings.

        Returns:
            (xy_q, xy_r, score) refined in original pixels, or the coarse ones when no crop pair
            holds enough coarse matches.
        """
        from mast3r_ros.core.matching import coarse_to_fine_match

        res = coarse_to_fine_match(self.engine, rgb_q, rgb_r, size=self.engine.image_size,
                                   subsample=cfg.subsample, overlap=cfg.c2f_overlap,
                                   max_crop_pairs=cfg.c2f_max_crop_pairs, coarse=(xy_q, xy_r),
                                   conf_threshold=cfg.desc_conf_threshold)
        if not res.refined:
            return xy_q, xy_r, score
        return res.xy_q, res.xy_r, res.conf.astype(np.float64)


def _features(enc: Encoding, encoder_id: EncoderId) -> Mast3rFeatures:
    if enc.encoder != encoder_id or not isinstance(enc.features, Mast3rFeatures):
        raise InputError(f"MASt3R backend got an encoding of another encoder "
                         f"({enc.encoder.mismatch(encoder_id)}); re-encode the map with this model")
    return enc.features


def _query_geometry(pts: np.ndarray, tr: ImageTransform) -> QueryGeometry:
    """Depth lookup and K estimate of the original query image from its (h, w, 3) pointmap."""
    w0, h0 = tr.orig_size
    pp = tr.to_network(np.array([[(w0 - 1) / 2.0, (h0 - 1) / 2.0]]))[0]
    f_net = estimate_focal(pts, pp=(float(pp[0]), float(pp[1])))
    K = None
    if np.isfinite(f_net) and f_net > 0:
        K = intrinsics_from_focal(f_net / float(np.mean(tr.scale)), w0, h0)

    def depth_at(xy: np.ndarray) -> np.ndarray:
        net = np.rint(tr.to_network(xy)).astype(np.int64)
        h, w = pts.shape[:2]
        ok = (net[:, 0] >= 0) & (net[:, 0] < w) & (net[:, 1] >= 0) & (net[:, 1] < h)
        z = np.full(net.shape[0], np.nan)
        z[ok] = pts[net[ok, 1], net[ok, 0], 2]
        return z

    return QueryGeometry(depth_at, K)
