"""Loss terms of the sparse global alignment and the selection of what each one uses.

:class:`AlignmentLosses` is the half of :class:`~.sparse_ga.SparseSceneOptimizer` that turns the
current state (intrinsics, poses, world points) into the official losses: the 3D matching loss
(coarse stage), the 2D reprojection loss (refinement), the DUSt3R-style fallback regression for
pairs whose matches are not confident, and the priors towards known cameras.
"""

from __future__ import annotations

import logging

import torch

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.errors import ConfigError
from mast3r_ros.core.mapping.known import KnownCameras
from mast3r_ros.core.mapping.optim import rigid_inv, transform_segments
from mast3r_ros.core.mapping.problem import AlignmentProblem

__all__ = ["AlignmentLosses"]

logger = logging.getLogger(__name__)


class AlignmentLosses:
    """Loss terms over the flat problem arrays (state set up by the optimiser's constructor)."""

    cfg: MappingConfig
    known: KnownCameras
    n: int
    dt: torch.dtype
    dev: torch.device
    pt_img: torch.Tensor
    pt_xy: torch.Tensor
    f0: torch.Tensor
    pp0_rel: torch.Tensor

    def intrinsics(self) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _split_losses(self, p: AlignmentProblem) -> None:
        """Select the matches of 'good' pairs and the fallback entries of the others."""
        ok = p.pair_max_conf > self.cfg.matching_conf_thr
        self.pair_ok = ok
        keep = ok[p.m_pair]
        d = self.dev
        self.m_i, self.m_j = p.m_pt_i[keep].to(d), p.m_pt_j[keep].to(d)
        self.m_conf = p.m_conf[keep].to(d)
        # 2D loss observations: pixel of one side vs the other side's 3D point, both ways
        self.o_pix = torch.cat((self.m_i, self.m_j))
        self.o_pt = torch.cat((self.m_j, self.m_i))
        self.o_conf = torch.cat((self.m_conf, self.m_conf))
        o_img = self.pt_img.index_select(0, self.o_pix)
        order = torch.argsort(o_img, stable=True)  # contiguous per image: segment transforms
        self.o_pix, self.o_pt, self.o_conf = self.o_pix[order], self.o_pt[order], self.o_conf[order]
        self.o_counts = torch.bincount(o_img, minlength=self.n).tolist()
        self.o_xy = self.pt_xy.index_select(0, self.o_pix)
        fb_idx, fb_cam, fb_tgt, fb_conf = [], [], [], []
        pair_index = {pr: k for k, pr in enumerate(p.pairs)}
        self._check_fallback_data(p, ok)
        for (a, b), (tgt, conf) in zip(p.fb_pairs, p.fb_target):
            k = pair_index.get((a, b), pair_index.get((b, a)))
            if bool(ok[k]):
                continue
            fb_idx.append(torch.arange(int(p.pt_start[a]), int(p.pt_start[a + 1])))
            fb_cam.append(torch.full((len(conf),), b, dtype=torch.long))
            fb_tgt.append(tgt)
            fb_conf.append(conf)
        self.has_fb = bool(fb_idx)
        if self.has_fb:
            cam = torch.cat(fb_cam)
            order = torch.argsort(cam, stable=True)
            self.fb_idx = torch.cat(fb_idx)[order].to(d)
            self.fb_tgt = torch.cat(fb_tgt)[order].to(d)
            self.fb_conf = torch.cat(fb_conf)[order].to(d)
            self.fb_counts = torch.bincount(cam, minlength=self.n).tolist()
        logger.info("alignment: %d/%d pairs use matches (%d matches), %d fall back to regression",
                    int(ok.sum()), len(ok), len(self.m_conf), int((~ok).sum()))

    @staticmethod
    def _check_fallback_data(p: AlignmentProblem, ok: torch.Tensor) -> None:
        """Every pair that falls back must have its fallback data in the problem."""
        have = {frozenset(ab) for ab in p.fb_pairs}
        lacking = [p.pairs[k] for k in torch.nonzero(~ok).flatten().tolist()
                   if frozenset(p.pairs[k]) not in have]
        if lacking:
            raise ConfigError(f"{len(lacking)} pairs (e.g. {lacking[0]}) fall back to the "
                              f"regression loss but the problem was gathered for "
                              f"matching_conf_thr={p.fallback_conf_thr}; gather it with the "
                              "optimiser's matching_conf_thr")

    # ---------------------------------------------------------------- losses
    def loss_3d(self, K, cam2w, pts, fn) -> torch.Tensor:
        """Confidence-weighted distance between the two 3D points of every match."""
        if len(self.m_conf) == 0:
            return pts.sum() * 0
        return self.m_conf @ fn(pts.index_select(0, self.m_i),
                                pts.index_select(0, self.m_j)) / self.m_conf.sum()

    def loss_2d(self, K, cam2w, pts, fn) -> torch.Tensor:
        """Confidence-weighted reprojection error of the other image's point, both directions."""
        if len(self.o_conf) == 0:
            return pts.sum() * 0
        P = K @ rigid_inv(cam2w)[:, :3]  # (N, 3, 4)
        r = transform_segments(P, pts.index_select(0, self.o_pt), self.o_counts)
        uv = (r[:, :2] / r[:, 2:3].clip(min=1e-3)).clip(min=-1000, max=2000)
        return self.o_conf @ fn(self.o_xy, uv) / self.o_conf.sum()

    def loss_fallback(self, cam2w, pts, fn) -> torch.Tensor:
        """Regression of each point onto the other image's prediction of it (bad pairs only)."""
        if not self.has_fb:
            return pts.sum() * 0
        tgt = transform_segments(cam2w, self.fb_tgt, self.fb_counts)
        return self.fb_conf @ fn(pts.index_select(0, self.fb_idx), tgt) / self.fb_conf.sum()

    def loss_priors(self, K, cam2w) -> torch.Tensor:
        """Penalties towards known intrinsics / poses (gauge-free for poses)."""
        loss = K.sum() * 0
        kn = self.known
        if kn.K and kn.intrinsics_mode == "prior":
            idx = torch.as_tensor(sorted(kn.K), device=self.dev)
            f, pp = self.intrinsics()
            loss = loss + kn.intrinsics_prior_weight * (
                (f[idx].log() - self.f0[idx].log()).square().mean()
                + (pp[idx] - self.pp0_rel[idx]).square().sum(1).mean())
        if len(kn.T_world_cam) >= 2 and kn.poses_mode == "prior":
            Rr, cr, Rk, ck = self._relative_known(cam2w)
            loss = loss + kn.pose_prior_weight * ((Rr - Rk).square().sum((1, 2)).mean()
                                                  + (cr - ck).square().sum(1).mean())
        return loss

    def _relative_known(self, cam2w: torch.Tensor):
        """Rotations and scale-normalised centres of the known cameras relative to the first one,
        for the estimate and for the known poses."""
        idx = sorted(self.known.T_world_cam)
        Tk = torch.stack([torch.as_tensor(self.known.T_world_cam[k], dtype=self.dt)
                          for k in idx]).to(self.dev)
        out = []
        for T in (cam2w[idx], Tk):
            R0 = T[0, :3, :3]
            Rrel = R0.T @ T[:, :3, :3]
            c = (T[:, :3, 3] - T[0, :3, 3]) @ R0
            c = c / c.square().sum(1).mean().sqrt().clip(min=1e-9)
            out += [Rrel, c]
        return out

