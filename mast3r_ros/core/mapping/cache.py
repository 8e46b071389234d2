"""Content-addressed disk cache of the pairwise stage (one file per unordered image pair).

Key: a file's name is the hash of the :class:`PairSettings` tag (cache format version, model id,
precision, image size, preprocessing, FRM settings, subsample) and of both images' content keys
(:func:`image_key`: hash of the network image), so a cache directory can be shared between runs
and machines: whatever produced a file, the same inputs and settings give the same name.

Integrity: a file is written to a temporary name in the same directory and published with
``os.link`` (atomic, fails when the name exists: put-if-absent, so concurrent writers of the same
pair, e.g. two Ray workers or two machines, never clobber each other and a reader never sees a
partial file). On read every array member is checked against its zip CRC-32 and the record's own
header (format, settings tag, image keys, shapes); a truncated or corrupt file is logged, removed
and reported as a miss, so the pair is recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from mast3r_ros.core.errors import ConfigError, InputError, MappingError
from mast3r_ros.core.mapping.pairdata import PairData, PairView, view_from_arrays
from mast3r_ros.core.model.preprocess import PREPROCESSING

__all__ = ["CACHE_FORMAT", "PairSettings", "PairHalf", "image_key", "PairCache"]

logger = logging.getLogger(__name__)

#: version of the file layout and of the pair computation (bump on any change of either)
CACHE_FORMAT = "mast3r-ros-pairs-v2"
_BAD_FILE = (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, InputError)


@dataclass(frozen=True)
class PairSettings:
    """Everything besides the two images that determines a pair's result (the cache key).

    Attributes:
        model_id: network weights identity (checkpoint sha256, ``InferenceEngine.model_id``).
        precision: inference precision actually used (``InferenceEngine.precision``).
        image_size: network input long side in pixels.
        subsample: FRM seed grid step (pixels).
        frm_dist: FRM descriptor distance.
        frm_max_iter: FRM iterations.
        preprocessing: identity of the image preprocessing.
    """

    model_id: str
    precision: str
    image_size: int
    subsample: int = 8
    frm_dist: str = "dot"
    frm_max_iter: int = 10
    preprocessing: str = PREPROCESSING

    def __post_init__(self) -> None:
        if not self.model_id:
            raise ConfigError("PairSettings.model_id is empty: the cache key needs the checkpoint "
                              "identity (engine.model_id)")

    def tag(self) -> str:
        """Canonical text of the settings (part of every cache key)."""
        return (f"{CACHE_FORMAT}|model={self.model_id}|precision={self.precision}|"
                f"size={self.image_size}|prep={self.preprocessing}|sub={self.subsample}|"
                f"frm={self.frm_dist},{self.frm_max_iter}|conf=sqrt")


@dataclass(frozen=True)
class PairHalf:
    """What the alignment reads of a pair for one of its images (never the other half).

    Attributes:
        view: that image's :class:`~.pairdata.PairView`.
        conf: (n,) float32 match confidences of the pair.
    """

    view: PairView
    conf: np.ndarray


def image_key(rgb: np.ndarray) -> str:
    """Content key of a network image: sha256 of its shape and uint8 (H, W, 3) RGB bytes."""
    a = np.ascontiguousarray(rgb, dtype=np.uint8)
    h = hashlib.sha256(str(a.shape).encode())
    h.update(a.tobytes())
    return h.hexdigest()[:32]


class PairCache:
    """The on-disk pair cache of one :class:`PairSettings` under ``root``.

    Args:
        root: cache directory (shared between runs and machines; created on first write).
        settings: what produced (or will produce) the pairs.
    """

    def __init__(self, root: str | Path, settings: PairSettings) -> None:
        self.root = Path(root)
        self.settings = settings
        self._tag = settings.tag()

    def path(self, key_a: str, key_b: str) -> Path:
        """File of the unordered pair of two image keys (the same for both orders)."""
        lo, hi = sorted((key_a, key_b))
        name = hashlib.sha256(f"{self._tag}|{lo}|{hi}".encode()).hexdigest()[:40]
        return self.root / "pairs" / name[:2] / f"{name}.npz"

    def contains(self, key_a: str, key_b: str) -> bool:
        """True when a structurally whole file exists for the pair (a cheap check of the zip's
        central directory: a truncated file is removed and reported missing). The arrays
        themselves are verified (CRC-32, header, shapes) when read."""
        p = self.path(key_a, key_b)
        if not p.is_file():
            return False
        if zipfile.is_zipfile(p):
            return True
        self._discard(p, zipfile.BadZipFile("no zip central directory (truncated?)"))
        return False

    def load(self, i: int, j: int, key_i: str, key_j: str) -> Optional[PairData]:
        """The whole cached pair oriented as (i, j), or None (miss, or a bad file, removed)."""
        p = self.path(key_i, key_j)
        try:
            with np.load(p, allow_pickle=False) as z:
                first = self._check_header(z, key_i, key_j)
                pd = PairData.from_arrays(i, j, {k: z[k] for k in z.files if k != "header"})
        except FileNotFoundError:
            return None
        except _BAD_FILE as exc:
            self._discard(p, exc)
            return None
        return pd if first == key_i else pd.swapped()

    def load_half(self, img_key: str, other_key: str) -> Optional[PairHalf]:
        """The view of the pair seen from the image ``img_key``, or None (miss or bad file).

        Only that view's arrays (plus the match confidences) are read from disk.
        """
        p = self.path(img_key, other_key)
        try:
            with np.load(p, allow_pickle=False) as z:
                first = self._check_header(z, img_key, other_key)
                tag = "v0" if first == img_key else "v1"
                names = [k for k in z.files if k.startswith(tag + ".")] + ["conf"]
                arrays = {k: z[k] for k in names}
                view = view_from_arrays(arrays, tag)
                conf = arrays["conf"]
                if conf.dtype != np.float32 or conf.shape != (view.xy.shape[0],):
                    raise InputError(f"conf {conf.shape} {conf.dtype} does not fit the matches")
        except FileNotFoundError:
            return None
        except _BAD_FILE as exc:
            self._discard(p, exc)
            return None
        return PairHalf(view, conf)

    def put(self, pd: PairData, key_i: str, key_j: str) -> bool:
        """Publish a pair unless the cache already holds it (put-if-absent).

        Returns:
            True when this call wrote the file, False when it was already there.

        Raises:
            MappingError: the cache directory cannot be written.
        """
        p = self.path(key_i, key_j)
        if p.is_file():
            return False
        header = json.dumps({"format": CACHE_FORMAT, "settings": self._tag,
                             "keys": [key_i, key_j], "n": pd.num_matches})
        try:
            p.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=p.parent, prefix=".tmp-", suffix=".npz")
            try:
                arrays = {"header": np.frombuffer(header.encode(), np.uint8), **pd.to_arrays()}
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, **arrays)  # type: ignore[arg-type]  # (numpy's stub: allow_pickle)
                    f.flush()
                    os.fsync(f.fileno())
                return _publish(tmp, p)
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
        except OSError as exc:
            raise MappingError(f"cannot write the pairwise cache {p}: {exc}; check the cache "
                               "directory's permissions and free space") from exc

    def _check_header(self, z: np.lib.npyio.NpzFile, key_a: str, key_b: str) -> str:
        """Validate a record's header; returns the key of its first view."""
        head = json.loads(bytes(z["header"]).decode())
        keys = head.get("keys", [])
        if head.get("format") != CACHE_FORMAT or head.get("settings") != self._tag \
                or sorted(keys) != sorted((key_a, key_b)):
            raise InputError(f"header {head} does not belong to this pair and settings")
        return str(keys[0])

    @staticmethod
    def _discard(path: Path, exc: BaseException) -> None:
        logger.warning("pair cache: %s is unreadable or corrupt (%s: %s); removing it, the pair "
                       "will be recomputed", path, type(exc).__name__, exc)
        try:
            path.unlink()
        except OSError:
            pass


def _publish(tmp: str, final: Path) -> bool:
    """Atomically give ``tmp`` the name ``final`` unless it exists; True when this call did."""
    try:
        os.link(tmp, final)
        return True
    except FileExistsError:
        return False
    except OSError:  # a file system without hard links: rename (atomic; same content either way)
        if final.exists():
            return False
        os.replace(tmp, final)
        return True
