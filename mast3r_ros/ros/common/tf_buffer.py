"""A small transform buffer with tf2's lookup semantics (pure Python + numpy, no rclpy).

Used where ``tf2_ros`` cannot be imported (the PyPI install): :mod:`mast3r_ros.ros.common.tf_io`
fills it from ``/tf`` and ``/tf_static``. It gives the results tf2 gives on the same data:

* each child frame has one parent and a time-sorted history of transforms (``cache_time`` seconds
  behind its newest sample, as tf2's ``TimeCache``) or, for static transforms, one value valid at
  every time;
* a lookup at a stamp interpolates between the two samples around it (translation linearly,
  rotation by slerp); a stamp outside the history is an extrapolation error (a single sample
  answers only its own stamp);
* a lookup at time 0 means "the latest time at which every dynamic link of the chain is known"
  (tf2's latest common time; 0 when the chain is all static);
* a chain is composed through the closest common ancestor of the two frames.

Times are integer nanoseconds; transforms are (4, 4) ``T_target_source`` (map source-frame points
into the target frame), the convention of ``tf2_ros.Buffer.lookup_transform(target, source, t)``.
"""

from __future__ import annotations

import bisect
import threading
import time
from dataclasses import dataclass
from typing import Optional

import numpy as np
from scipy.spatial.transform import Rotation

from mast3r_ros.core.errors import Mast3rRosError
from mast3r_ros.ros.common.transforms import interpolate_pose

__all__ = ["TransformUnavailable", "TransformBuffer", "xyzq_to_matrix"]

_MAX_DEPTH = 1000
_MAX_FRAMES = 10_000


class TransformUnavailable(Mast3rRosError):
    """A transform cannot be looked up (unknown frame, no path, extrapolation, timeout)."""


def xyzq_to_matrix(xyzq: np.ndarray) -> np.ndarray:
    """(7,) ``[x, y, z, qx, qy, qz, qw]`` -> (4, 4) transform."""
    T = np.eye(4)
    T[:3, :3] = Rotation.from_quat(xyzq[3:]).as_matrix()
    T[:3, 3] = xyzq[:3]
    return T


def _fmt(ns: int) -> str:
    return f"{ns * 1e-9:.6f}"


@dataclass
class _Cache:
    """History of one child frame: parallel lists sorted by stamp (ns)."""

    static: bool
    max_age_ns: int
    stamps: list[int]
    parents: list[str]
    poses: list[np.ndarray]

    def insert(self, stamp: int, parent: str, xyzq: np.ndarray) -> None:
        if self.static:
            self.stamps, self.parents, self.poses = [0], [parent], [xyzq]
            return
        if self.stamps and stamp < self.stamps[-1] - self.max_age_ns:
            return  # older than the history kept (tf2 drops it too)
        i = bisect.bisect_left(self.stamps, stamp)
        if i < len(self.stamps) and self.stamps[i] == stamp:
            self.parents[i], self.poses[i] = parent, xyzq  # same stamp: newest data wins
        else:
            self.stamps.insert(i, stamp)
            self.parents.insert(i, parent)
            self.poses.insert(i, xyzq)
        cut = bisect.bisect_left(self.stamps, self.stamps[-1] - self.max_age_ns)
        if cut:
            del self.stamps[:cut], self.parents[:cut], self.poses[:cut]

    def latest(self) -> tuple[int, str]:
        """(newest stamp, its parent); stamp 0 for a static frame."""
        return (0 if self.static else self.stamps[-1]), self.parents[-1]

    def at(self, stamp: int, child: str) -> tuple[str, np.ndarray]:
        """(parent, (7,) pose) at ``stamp`` (0 = newest).

        Raises:
            TransformUnavailable: ``stamp`` outside the history (extrapolation).
        """
        if self.static or stamp == 0:
            return self.parents[-1], self.poses[-1]
        first, last = self.stamps[0], self.stamps[-1]
        if stamp > last:
            raise TransformUnavailable(
                f"lookup would require extrapolation into the future: requested {_fmt(stamp)} but "
                f"the latest data of {child} is at {_fmt(last)}")
        if stamp < first:
            raise TransformUnavailable(
                f"lookup would require extrapolation into the past: requested {_fmt(stamp)} but "
                f"the earliest data of {child} is at {_fmt(first)}")
        i = bisect.bisect_left(self.stamps, stamp)
        if self.stamps[i] == stamp:
            return self.parents[i], self.poses[i]
        t0, t1 = self.stamps[i - 1], self.stamps[i]
        if self.parents[i - 1] != self.parents[i]:
            return self.parents[i - 1], self.poses[i - 1]  # tf2: no interpolation across parents
        ratio = (stamp - t0) / (t1 - t0)
        return self.parents[i - 1], interpolate_pose(self.poses[i - 1], self.poses[i], ratio)


class TransformBuffer:
    """Thread-safe store of static and dynamic transforms with tf2 lookups (module docstring).

    Args:
        cache_time: seconds of history kept behind each frame's newest sample (tf2: 10 s).
    """

    def __init__(self, cache_time: float = 10.0) -> None:
        self._max_age_ns = int(cache_time * 1e9)
        self._frames: dict[str, _Cache] = {}
        self._cond = threading.Condition()

    # ------------------------------------------------------------------ filling
    def set_transform(self, parent: str, child: str, stamp_ns: int, xyzq: np.ndarray,
                      static: bool = False) -> bool:
        """Store ``T_parent_child`` at ``stamp_ns`` (``xyzq`` = x y z qx qy qz qw).

        Returns:
            False (nothing stored) for an invalid transform: empty or equal frame names, a
            non-finite value or a zero quaternion; or when the frame limit is reached.
        """
        xyzq = np.asarray(xyzq, dtype=np.float64).reshape(7)
        norm = float(np.linalg.norm(xyzq[3:]))
        if (not parent or not child or parent == child or not np.all(np.isfinite(xyzq))
                or norm < 1e-9):
            return False
        xyzq = np.concatenate([xyzq[:3], xyzq[3:] / norm])
        with self._cond:
            cache = self._frames.get(child)
            if cache is None:
                if len(self._frames) >= _MAX_FRAMES:
                    return False
                cache = _Cache(static, self._max_age_ns, [], [], [])
                self._frames[child] = cache
            cache.insert(int(stamp_ns), parent, xyzq)
            self._cond.notify_all()
        return True

    def clear(self) -> None:
        """Forget every transform (e.g. after a clock jump)."""
        with self._cond:
            self._frames.clear()

    def frames(self) -> list[str]:
        """Names of the child frames known to the buffer."""
        with self._cond:
            return sorted(self._frames)

    # ------------------------------------------------------------------ lookups
    def lookup(self, target: str, source: str, stamp_ns: int = 0,
               timeout: float = 0.0) -> tuple[np.ndarray, int]:
        """``T_target_source`` at ``stamp_ns`` (0 = latest common time), waiting up to ``timeout``.

        Returns:
            ((4, 4) transform, the stamp it is valid at in ns).

        Raises:
            TransformUnavailable: with tf2's kind of reason, after ``timeout`` seconds.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        with self._cond:
            while True:
                try:
                    return self._lookup(target, source, int(stamp_ns))
                except TransformUnavailable:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        raise
                    self._cond.wait(remaining)

    def _parent(self, frame: str, stamp: int) -> str:
        cache = self._frames[frame]
        return cache.latest()[1] if stamp == 0 else cache.at(stamp, frame)[0]

    def _exists(self, name: str) -> bool:
        return name in self._frames or any(c.parents[-1] == name for c in self._frames.values())

    def _common(self, target: str, source: str, stamp: int) -> tuple[list[str], list[str]]:
        """Child frames of the links from ``source`` and from ``target`` up to their closest
        common ancestor, at ``stamp`` (0 = latest parents)."""
        for name in (target, source):
            if not self._exists(name):
                raise TransformUnavailable(f'"{name}" passed to lookupTransform argument does '
                                           "not exist")
        src_path = [source]  # source, its parent, ... up to the root or the first gap
        gap: Optional[TransformUnavailable] = None
        while src_path[-1] in self._frames:
            try:
                src_path.append(self._parent(src_path[-1], stamp))
            except TransformUnavailable as exc:  # only fatal if the chain needs this link
                gap = exc
                break
            if len(src_path) > _MAX_DEPTH:
                raise TransformUnavailable("the TF tree contains a loop")
        tgt_links: list[str] = []
        frame = target
        while frame not in src_path:
            if frame not in self._frames or len(tgt_links) > _MAX_DEPTH:
                raise gap or TransformUnavailable(
                    f'could not find a connection between "{target}" and "{source}" because '
                    "they are not part of the same tree")
            tgt_links.append(frame)
            frame = self._parent(frame, stamp)
        return src_path[:src_path.index(frame)], tgt_links

    def _to_ancestor(self, links: list[str], stamp: int) -> np.ndarray:
        """``T_ancestor_first`` of a list of child frames going up the tree."""
        T = np.eye(4)
        for child in links:
            T = xyzq_to_matrix(self._frames[child].at(stamp, child)[1]) @ T
        return T

    def _lookup(self, target: str, source: str, stamp: int) -> tuple[np.ndarray, int]:
        if target == source:
            cache = self._frames.get(source)
            latest = cache.latest()[0] if cache is not None else 0
            return np.eye(4), stamp or latest
        if stamp == 0:
            src_links, tgt_links = self._common(target, source, 0)
            dynamic = [self._frames[c].latest()[0] for c in src_links + tgt_links
                       if not self._frames[c].static]
            stamp = min(dynamic) if dynamic else 0
        src_links, tgt_links = self._common(target, source, stamp)
        T_anc_src = self._to_ancestor(src_links, stamp)
        T_anc_tgt = self._to_ancestor(tgt_links, stamp)
        return np.linalg.inv(T_anc_tgt) @ T_anc_src, stamp
