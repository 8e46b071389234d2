"""Sparse global alignment optimiser (MASt3R-SfM back end).

Parameters per image: a unit quaternion (x, y, z, w) and a translation relative to its parent in the
kinematic tree, a log focal, a principal point relative to the image size, a log scale and one
depth per anchor (relative to the image's median anchor depth, 'add' mode:
``depth = z_cam + (core - 1) * median * scale``; the global factor ``1 / min(scales)`` stops the
scale from collapsing). Stage 1 (coarse) moves poses and scales under a confidence-weighted 3D
matching loss; stage 2 (refine) also moves focals, principal points and anchor depths under a 2D
reprojection loss. Pairs whose best match confidence is not above ``matching_conf_thr`` use a
DUSt3R-style regression loss instead (weight ``loss_dust3r_w``). Everything is vectorised over
points and matches (gathers on the flat arrays of :class:`AlignmentProblem`).

Known intrinsics and known poses (e.g. odometry) can be fixed or used as priors
(:class:`KnownCameras`). With known poses the result is expressed in their frame and scale;
otherwise the root camera fixes the gauge.
"""

from __future__ import annotations

import logging
import math
from typing import Callable, Optional

import numpy as np
import torch

from mast3r_ros.core.config import MappingConfig
from mast3r_ros.core.errors import InputError
from mast3r_ros.core.mapping.kinematic import KinematicTree
from mast3r_ros.core.mapping.known import AlignmentResult, KnownCameras
from mast3r_ros.core.mapping.losses import AlignmentLosses
from mast3r_ros.core.mapping.optim import (
    Adam,
    cosine_schedule,
    gamma_loss,
    quat_to_rotmat,
    transform_segments,
)
from mast3r_ros.core.mapping.problem import AlignmentProblem

__all__ = ["gamma_loss", "cosine_schedule", "quat_to_rotmat", "KnownCameras", "AlignmentResult",
           "SparseSceneOptimizer", "sparse_scene_optimize"]

logger = logging.getLogger(__name__)
ProgressFn = Callable[[str, int, int, float], None]


class SparseSceneOptimizer(AlignmentLosses):
    """Holds the parameters of one alignment and runs its two stages.

    Args:
        problem: flattened canonical data (:func:`.canonical.build_problem`).
        tree: kinematic tree over the images.
        cfg: mapping configuration (learning rates, iterations, losses, thresholds).
        known: optional known intrinsics / poses.
        device: torch device for the optimisation.
    """

    def __init__(self, problem: AlignmentProblem, tree: KinematicTree, cfg: MappingConfig,
                 known: Optional[KnownCameras] = None, device: str | torch.device = "cpu") -> None:
        n = problem.num_images
        if len(tree.edges) != n - 1:
            raise InputError(f"kinematic tree has {len(tree.edges)} edges for {n} images")
        self.cfg, self.tree, self.n = cfg, tree, n
        self.known = known or KnownCameras()
        self.known.validate(n)
        dev, dt = torch.device(device), problem.core_depth.dtype
        self.dev, self.dt = dev, dt
        p = problem
        self.sizes = p.image_sizes.to(dev)
        self.base_f = p.base_focals.clone().to(dev)
        pps = p.pps.clone().to(dev)
        for k, K in self.known.K.items():
            Kt = torch.as_tensor(K, dtype=dt, device=dev)
            self.base_f[k] = Kt[[0, 1], [0, 1]].mean()
            pps[k] = Kt[:2, 2]
        self.f0, self.pp0_rel = self.base_f.clone(), pps / self.sizes
        self.anchor_img = torch.repeat_interleave(torch.arange(n, device=dev),
                                                  torch.as_tensor(p.n_anchors, device=dev))
        core = p.core_depth.to(dev)
        self.med = torch.stack([core[p.anchor_start[k]:p.anchor_start[k + 1]].median()
                                for k in range(n)])
        self.diag = self.sizes.norm(dim=1)
        self.pt_img, self.pt_xy = p.pt_img.to(dev), p.pt_xy.to(dev)
        self.pt_anchor, self.pt_offset = p.pt_anchor.to(dev), p.pt_offset.to(dev)
        self.pt_start = p.pt_start
        self.pt_counts = np.diff(p.pt_start).tolist()
        self._split_losses(p)
        shared = cfg.shared_intrinsics
        w = torch.ones(n, dtype=dt, device=dev) / n
        P = torch.nn.Parameter
        self.pp_rel = P((w @ self.pp0_rel)[None] if shared else self.pp0_rel.clone())
        self.log_f = P((w @ self.base_f).log()[None] if shared else self.base_f.log())
        self.quat = P(torch.tensor([0, 0, 0, 1.0], dtype=dt, device=dev).repeat(n, 1))
        self.trans = torch.nn.Parameter(torch.zeros(n, 3, dtype=dt, device=dev))
        self.log_size = torch.nn.Parameter(torch.zeros(n, dtype=dt, device=dev))
        self.core = torch.nn.Parameter(core / self.med[self.anchor_img])
        self.levels = [(torch.as_tensor(a, device=dev), torch.as_tensor(b, device=dev))
                       for a, b in tree.levels()]
        self.fixed_pose = None
        if self.known.T_world_cam and self.known.poses_mode == "fixed":
            self.fixed_pose = torch.stack([torch.as_tensor(self.known.T_world_cam[k], dtype=dt)
                                           for k in range(n)]).to(dev)

    # ----------------------------------------------------------------- model
    def intrinsics(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(N,) focals clipped to [0.25, 10] x diagonal, (N, 2) relative principal points."""
        f = self.log_f.exp().expand(self.n).clip(min=0.25 * self.diag, max=10 * self.diag)
        return f, self.pp_rel.expand(self.n, 2)

    def _chain(self) -> torch.Tensor:
        """(N, 4, 4) cam-to-world of the kinematic chain (before the re-parameterisation)."""
        q = torch.nn.functional.normalize(self.quat, dim=1)
        rel = torch.cat((torch.cat((quat_to_rotmat(q), self.trans[:, :, None]), 2),
                         torch.zeros(self.n, 1, 4, dtype=self.dt, device=self.dev)), 1)
        rel = rel + torch.nn.functional.pad(torch.ones(self.n, 1, 1, dtype=self.dt,
                                                       device=self.dev), (3, 0, 3, 0))
        cams: dict[int, torch.Tensor] = {self.tree.root: rel[self.tree.root]}
        for parents, children in self.levels:
            out = torch.stack([cams[int(a)] for a in parents]) @ rel[children]
            for c, T in zip(children.tolist(), out):
                cams[c] = T
        return torch.stack([cams[k] for k in range(self.n)])

    def forward(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Current state: K (N,3,3), cam2w (N,4,4), anchor depths (A,), world points (P,3)."""
        f, pp_rel = self.intrinsics()
        K = torch.eye(3, dtype=self.dt, device=self.dev).repeat(self.n, 1, 1)
        K[:, 0, 0] = K[:, 1, 1] = f
        K[:, :2, 2] = pp_rel * self.sizes
        size = self.log_size.exp()
        z_cam = size * self.med * f / self.base_f
        gs: torch.Tensor | float
        if self.fixed_pose is not None:
            cam2w, gs = self.fixed_pose, 1.0
        else:
            gs = 1 / size.min()
            tmp = self._chain()
            ones = torch.ones(self.n, 1, dtype=self.dt, device=self.dev)
            off = z_cam[:, None] * torch.cat((self.sizes / f[:, None] * (0.5 - pp_rel), ones), -1)
            t = gs * (tmp[:, :3, 3:] - tmp[:, :3, :3] @ off[:, :, None])
            cam2w = torch.cat((torch.cat((tmp[:, :3, :3], t), 2), tmp[:, 3:]), 1)
        ai, pi = self.anchor_img, self.pt_img
        sel = torch.index_select  # (index_select: fast backward, unlike advanced indexing)
        depth = gs * (sel(z_cam, 0, ai) + (self.core - 1) * sel(self.med * size, 0, ai))
        offs = 1 + (self.pt_offset - 1) * sel(self.base_f / f, 0, pi)
        z = sel(depth, 0, self.pt_anchor) * offs
        xy = (self.pt_xy - sel(K[:, :2, 2], 0, pi)) / sel(f, 0, pi)[:, None]
        pc = torch.cat((xy * z[:, None], z[:, None]), 1)
        return K, cam2w, depth, transform_segments(cam2w, pc, self.pt_counts)

    # ---------------------------------------------------------------- losses
    # ----------------------------------------------------------------- stages
    def _loop(self, stage: str, loss_fn, lr0: float, niter: int, fn,
              progress: Optional[ProgressFn]) -> tuple[tuple, float]:
        params: list[torch.Tensor] = [p for p in (self.pp_rel, self.log_f, self.quat, self.trans,
                                                  self.log_size, self.core) if p.requires_grad]
        opt = Adam(params, betas=(0.9, 0.9)) if params else None
        fd = gamma_loss(self.cfg.gamma_fallback)
        loss_v = float("nan")
        for it in range(niter or 1):
            K, cam2w, depth, pts = self.forward()
            if niter == 0 or opt is None:
                break
            lr = cosine_schedule(it / niter, lr0)
            opt.zero_grad()
            loss = (loss_fn(K, cam2w, pts, fn)
                    + self.cfg.loss_dust3r_w * self.loss_fallback(cam2w, pts, fd)
                    + self.loss_priors(K, cam2w))
            loss.backward()
            opt.step(lr)
            with torch.no_grad():
                self.quat.div_(self.quat.norm(dim=1, keepdim=True))
            loss_v = float(loss.detach())
            if progress is not None:
                progress(stage, it + 1, niter, loss_v)
            if not math.isfinite(loss_v):
                logger.warning("%s stage: non-finite loss at iteration %d, stopping", stage, it)
                break
        return (K.detach(), cam2w.detach(), depth.detach(), pts.detach()), loss_v

    def _set_trainable(self, fine: bool) -> None:
        kn = self.known
        free_pose = self.fixed_pose is None
        self.quat.requires_grad_(free_pose)
        self.trans.requires_grad_(free_pose)
        self.log_size.requires_grad_(True)
        fixed_k = bool(kn.K) and kn.intrinsics_mode == "fixed"
        if fixed_k and len(kn.K) != self.n and not self.cfg.shared_intrinsics:
            self._k_mask = torch.zeros(self.n, dtype=torch.bool, device=self.dev)
            self._k_mask[sorted(kn.K)] = True
        all_fixed = fixed_k and len(kn.K) == self.n
        self.log_f.requires_grad_(fine and not all_fixed)
        self.pp_rel.requires_grad_(fine and self.cfg.opt_pp and not all_fixed)
        self.core.requires_grad_(fine and self.cfg.opt_depth)
        if fine and fixed_k and len(kn.K) != self.n and not self.cfg.shared_intrinsics:
            keep = (~self._k_mask).to(self.dt)
            for prm, m in ((self.log_f, keep), (self.pp_rel, keep[:, None])):
                if prm.requires_grad:
                    prm.register_hook(lambda g, m=m: g * m)

    def run(self, progress: Optional[ProgressFn] = None) -> AlignmentResult:
        """Coarse stage, then (if ``niter2 > 0``) the refinement stage.

        Runs on the caller's torch thread settings (the CLI or node chooses them once; these
        tensors are small, so one thread is fastest below ~1e5 points).
        """
        cfg = self.cfg
        self._set_trainable(fine=False)
        res, l1 = self._loop("coarse", self.loss_3d, cfg.lr1, cfg.niter1, gamma_loss(cfg.gamma1),
                             progress)
        l2 = float("nan")
        if cfg.niter2:
            self._set_trainable(fine=True)
            res, l2 = self._loop("fine", self.loss_2d, cfg.lr2, cfg.niter2, gamma_loss(cfg.gamma2),
                                 progress)
        return self._result(res, l1, l2)

    def _result(self, res, l1: float, l2: float) -> AlignmentResult:
        K, cam2w, depth, pts = (x.double() for x in res)
        if len(self.known.T_world_cam) >= 2 and self.fixed_pose is None:
            cam2w, pts, depth = self._to_known_frame(cam2w, pts, depth)
        a0 = self.anchor_img.cpu().numpy()
        starts = np.searchsorted(a0, np.arange(self.n + 1))
        return AlignmentResult(
            K=K.cpu().numpy(), T_world_cam=cam2w.cpu().numpy(),
            anchor_depth=[depth[starts[k]:starts[k + 1]].float().cpu().numpy()
                          for k in range(self.n)],
            pts3d=[pts[self.pt_start[k]:self.pt_start[k + 1]].float().cpu().numpy()
                   for k in range(self.n)],
            loss_coarse=l1, loss_fine=l2, tree=self.tree)

    def _to_known_frame(self, cam2w, pts, depth):
        """Similarity that maps the first known camera onto its known pose and matches the RMS
        spread of the known camera centres."""
        idx = sorted(self.known.T_world_cam)
        Tk = torch.stack([torch.as_tensor(self.known.T_world_cam[k], dtype=torch.float64)
                          for k in idx]).to(cam2w.device)
        ce, ck = cam2w[idx, :3, 3], Tk[:, :3, 3]
        s = ((ck - ck[0]).square().sum(1).mean().sqrt()
             / (ce - ce[0]).square().sum(1).mean().sqrt().clip(min=1e-12))
        R = Tk[0, :3, :3] @ cam2w[idx[0], :3, :3].T
        t = ck[0] - s * R @ ce[0]
        out = cam2w.clone()
        out[:, :3, :3] = R @ cam2w[:, :3, :3]
        out[:, :3, 3] = s * cam2w[:, :3, 3] @ R.T + t
        return out, s * pts @ R.T + t, s * depth


def sparse_scene_optimize(problem: AlignmentProblem, tree: KinematicTree, cfg: MappingConfig,
                          known: Optional[KnownCameras] = None, device: str | torch.device = "cpu",
                          progress: Optional[ProgressFn] = None) -> AlignmentResult:
    """Run both stages of the sparse global alignment; see :class:`SparseSceneOptimizer`."""
    return SparseSceneOptimizer(problem, tree, cfg, known, device).run(progress)
