"""The keyframe map in memory: typed keyframes, their encodings and a retrieval index, with O(1)
add / lookup / remove so that a tracker or a mapper can grow it while it is being used.

A :class:`KeyframeMap` keeps, per keyframe id:

* a :class:`KeyframeRecord` (size, K, pose, stamp, what 3D it has): small, always in memory;
* the :class:`Keyframe` payload (image, depth / pointmap): in memory for maps built here, or read
  on demand through a :class:`PayloadSource` for maps opened from disk;
* optionally its :class:`~mast3r_ros.core.types.Encoding` under the map's single
  :class:`~mast3r_ros.core.features.EncoderId`: the typed features (through the payload source
  too) and the global descriptor, kept in a :class:`~mast3r_ros.core.retrieval.GlobalIndex`.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Hashable, Iterator
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import InputError
from mast3r_ros.core.features import EncoderId, Features, features_from_arrays
from mast3r_ros.core.map.cloud import sparse_cloud
from mast3r_ros.core.map.records import Keyframe, KeyframeRecord, MapMeta, PayloadSource
from mast3r_ros.core.retrieval.index import GlobalIndex
from mast3r_ros.core.types import Encoding, KeyframeEncoding

__all__ = ["Keyframe", "KeyframeRecord", "MapMeta", "PayloadSource", "KeyframeMap"]


class KeyframeMap:
    """Keyframes, their encodings and a retrieval index (see the module docstring).

    Args:
        meta: descriptive metadata.
        keyframes: initial keyframes (added in order, without encodings).

    Raises:
        InputError: duplicate keyframe ids.
    """

    def __init__(self, meta: Optional[MapMeta] = None,
                 keyframes: Optional[list[Keyframe]] = None) -> None:
        self.meta = meta if meta is not None else MapMeta()
        self.encoder: Optional[EncoderId] = None
        self.source: Optional[PayloadSource] = None
        self._records: dict[int, KeyframeRecord] = {}
        self._mem: dict[int, Keyframe] = {}
        self._features: dict[int, Features] = {}
        self.index: Optional[GlobalIndex] = None
        self._poses: Optional[tuple[list[int], np.ndarray]] = None
        self.uid = uuid.uuid4().hex   # identity of this map object, part of encoding cache keys
        self._epoch = 0               # bumped when a stored encoding changes or goes
        for kf in keyframes or []:
            self.add(kf)

    # ------------------------------------------------------------------ size and lookup
    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, keyframe_id: object) -> bool:
        return keyframe_id in self._records

    @property
    def ids(self) -> list[int]:
        """Keyframe ids in insertion order."""
        return list(self._records)

    def record(self, keyframe_id: int) -> KeyframeRecord:
        """The index row of a keyframe, O(1) (KeyError when absent)."""
        return self._records[keyframe_id]

    def records(self) -> Iterator[KeyframeRecord]:
        """Index rows in insertion order."""
        return iter(list(self._records.values()))

    def keyframe(self, keyframe_id: int) -> Keyframe:
        """The keyframe with this id, O(1) (read through the payload source when not in memory).

        Raises:
            KeyError: unknown id.
            MapFormatError: the stored payload is corrupt (source-backed maps).
        """
        rec = self._records[keyframe_id]
        kf = self._mem.get(keyframe_id)
        if kf is not None:
            return kf
        if self.source is None:
            raise KeyError(keyframe_id)
        return self.source.keyframe(rec)

    def keyframes(self) -> Iterator[Keyframe]:
        """Every keyframe in insertion order (payloads read one at a time)."""
        for kid in list(self._records):
            yield self.keyframe(kid)

    def features(self, keyframe_id: int) -> Optional[Features]:
        """The stored features of a keyframe under :attr:`encoder`, or None."""
        rec = self._records[keyframe_id]
        f = self._features.get(keyframe_id)
        if f is None and self.source is not None and self.index is not None \
                and keyframe_id in self.index:
            f = self.source.features(rec)
        return f

    def encoding(self, keyframe_id: int) -> Optional[Encoding]:
        """A keyframe's :class:`Encoding` (features + global descriptor), or None when absent."""
        rec = self._records[keyframe_id]
        if self.encoder is None or self.index is None or keyframe_id not in self.index:
            return None
        f = self.features(keyframe_id)
        if f is None:
            return None
        return Encoding(self.encoder, rec.width, rec.height, self.index.descriptor(keyframe_id), f)

    def keyframe_encoding(self, keyframe_id: int) -> KeyframeEncoding:
        """The keyframe as a match reference (its image loads only if coarse-to-fine needs it).

        Raises:
            InputError: the keyframe has no encoding (encode the map first).
        """
        enc = self.encoding(keyframe_id)
        if enc is None:
            raise InputError(f"keyframe {keyframe_id} has no encoding; encode the map with the "
                             "backend first")
        return KeyframeEncoding(keyframe_id, enc, lambda: self.keyframe(keyframe_id).rgb,
                                self.encoding_key(keyframe_id))

    def encoding_key(self, keyframe_id: int) -> Hashable:
        """A key that names the current content of a keyframe's encoding (for caches of derived
        data, e.g. its tokens on a GPU); it changes when the encoding is replaced or removed."""
        return (self.uid, self._epoch, int(keyframe_id))

    def payload_in_memory(self, keyframe_id: int) -> bool:
        """True when the keyframe's pixels are in memory, not read through :attr:`source`."""
        return keyframe_id in self._mem

    def features_in_memory(self, keyframe_id: int) -> bool:
        """True when the keyframe's features are in memory, not read through :attr:`source`."""
        return keyframe_id in self._features

    def bind_source(self, source: PayloadSource) -> None:
        """Read every payload and feature through ``source`` from now on and release the
        in-memory copies (a store calls this once it holds all of them, e.g. after a save)."""
        self.source = source
        self._mem.clear()
        self._features.clear()

    def missing_encodings(self) -> list[int]:
        """Ids of keyframes without an encoding under :attr:`encoder`."""
        return [i for i in self._records if self.index is None or i not in self.index]

    # ------------------------------------------------------------------ updates
    def add(self, kf: Keyframe, encoding: Optional[Encoding] = None) -> None:
        """Add a keyframe (and its encoding), amortised O(1).

        Raises:
            InputError: duplicate id, or an encoding of another encoder / image size.
        """
        if kf.id in self._records:
            raise InputError(f"keyframe id {kf.id} is already in the map")
        if encoding is not None:
            self._check_encoding(kf.id, kf.width, kf.height, encoding)
        self._records[kf.id] = kf.record()
        self._mem[kf.id] = kf
        self._poses = None
        if encoding is not None:
            self._store_encoding(kf.id, encoding)

    def add_record(self, record: KeyframeRecord) -> None:
        """Add a keyframe whose payload the :attr:`source` provides (used by stores)."""
        if record.id in self._records:
            raise InputError(f"keyframe id {record.id} is already in the map")
        self._records[record.id] = record
        self._poses = None

    def set_pose(self, keyframe_id: int, T_map_cam: np.ndarray) -> None:
        """Move a keyframe (e.g. after a pose-graph optimisation), O(1).

        Raises:
            KeyError: unknown id.
            InputError: not a finite 4x4 matrix.
        """
        T = np.array(T_map_cam, dtype=np.float64)
        if T.shape != (4, 4) or not np.all(np.isfinite(T)):
            raise InputError(f"keyframe {keyframe_id}: T_map_cam must be a finite 4x4 matrix")
        self._records[keyframe_id] = dataclasses.replace(self._records[keyframe_id], T_map_cam=T)
        kf = self._mem.get(keyframe_id)
        if kf is not None:
            self._mem[keyframe_id] = dataclasses.replace(kf, T_map_cam=T)
        self._poses = None

    def set_encoding(self, keyframe_id: int, encoding: Encoding) -> None:
        """Attach (or replace) the encoding of a keyframe already in the map.

        Raises:
            KeyError: unknown id.
            InputError: encoder or image size differs from the map's.
        """
        rec = self._records[keyframe_id]
        self._check_encoding(keyframe_id, rec.width, rec.height, encoding)
        if self.index is not None and keyframe_id in self.index:
            self.index.remove(keyframe_id)
            self._epoch += 1
        self._store_encoding(keyframe_id, encoding)

    def clear_encodings(self) -> None:
        """Drop every encoding and the encoder identity (e.g. before re-encoding the map)."""
        self.encoder, self.index = None, None
        self._features = {}
        self._epoch += 1

    def remove(self, keyframe_id: int) -> None:
        """Remove a keyframe and its encoding, amortised O(1) (KeyError when absent)."""
        del self._records[keyframe_id]
        self._mem.pop(keyframe_id, None)
        self._features.pop(keyframe_id, None)
        if self.index is not None and keyframe_id in self.index:
            self.index.remove(keyframe_id)
            self._epoch += 1
        self._poses = None

    def _check_encoding(self, kid: int, width: int, height: int, enc: Encoding) -> None:
        if self.encoder is not None and enc.encoder != self.encoder:
            raise InputError(f"keyframe {kid}: encoding from another encoder "
                             f"({enc.encoder.mismatch(self.encoder)}); the map holds "
                             f"{self.encoder.backend} encodings")
        if (enc.width, enc.height) != (width, height):
            raise InputError(f"keyframe {kid}: encoding of a {enc.width}x{enc.height} image, "
                             f"keyframe is {width}x{height}")

    def _store_encoding(self, kid: int, enc: Encoding) -> None:
        if self.index is None:
            self.index = GlobalIndex(np.zeros((0, enc.global_desc.shape[-1]), np.float32), [])
        self.index.add(kid, enc.global_desc)
        self.encoder = enc.encoder
        # keep exactly what a store would persist, so a saved and reloaded map behaves the same
        self._features[kid] = features_from_arrays(enc.features.KIND, enc.features.to_arrays())

    # ------------------------------------------------------------------ geometry
    def poses(self) -> np.ndarray:
        """(N, 4, 4) float64 camera-to-map poses in :attr:`ids` order (cached between changes)."""
        return self._pose_table()[1]

    def positions(self) -> np.ndarray:
        """(N, 3) float64 camera centres in the map frame, in :attr:`ids` order."""
        return self.poses()[:, :3, 3]

    def _pose_table(self) -> tuple[list[int], np.ndarray]:
        if self._poses is None:
            ids = list(self._records)
            T = (np.stack([self._records[i].T_map_cam for i in ids]) if ids
                 else np.zeros((0, 4, 4)))
            self._poses = (ids, T)
        return self._poses

    def points_map(self, max_points: int = 100_000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """A sparse coloured cloud of the map (for a latched PointCloud2).

        Args:
            max_points: upper bound on the number of points returned.
            seed: seed of the random subsampling (deterministic output).

        Returns:
            ``(points (M, 3) float64 in the map frame, colours (M, 3) uint8 RGB)``.

        At most one keyframe per 64 points is read (evenly spread over the map), so a large map
        read from disk is not read whole for its display cloud.
        """
        step = max(1, -(-len(self) // max(1, max_points // 64)))
        chosen = self.ids[::step]
        return sparse_cloud((self.keyframe(i) for i in chosen), len(chosen), max_points, seed)

