"""The pairwise mapping stage on a Ray cluster: the compute step of ``plan -> compute -> gather``.

Each worker is a Ray actor that loads the network once (:func:`~mast3r_ros.core.model.factory.
make_engine` in its constructor) and runs :class:`~.pairwise.PairComputer`, the same code as the
local path: it opens the images itself from their paths, keeps a bounded LRU of encodings, and
publishes every pair straight into the shared :class:`~.cache.PairCache` with put-if-absent
semantics. Only small status tuples come back to the driver; the driver streams chunks of
consecutive pairs with at most ``tasks_in_flight`` tasks per worker (``ray.wait``), so its
memory does not grow with the job. A rerun, or a second machine on the same cache, skips every
finished pair. The alignment then gathers from the cache on the driver.

Failures: an address that does not answer within ``connect_timeout`` is a
:class:`~mast3r_ros.core.errors.MappingError` before Ray starts; a worker that dies is restarted
(``max_restarts``) and its task retried (tasks are idempotent); a task that keeps failing stops
the build with a MappingError naming the pairs. The cache never holds a partial pair (atomic
publication, verified on read).

This is the only module that imports Ray, and only when a :class:`RayPairCompute` runs.
"""

from __future__ import annotations

import logging
import socket
import time
from typing import TYPE_CHECKING, Any, Callable, Optional
from urllib.parse import urlparse

import numpy as np

from mast3r_ros.core.config import ModelConfig, RayConfig
from mast3r_ros.core.errors import MappingError
from mast3r_ros.core.mapping.cache import PairCache, PairSettings
from mast3r_ros.core.mapping.pairwise import ComputeStats, PairComputer, ProgressFn, iter_chunks

if TYPE_CHECKING:
    from mast3r_ros.core.mapping.plan import MappingPlan

__all__ = ["RayPairCompute", "PairWorker", "check_reachable"]

logger = logging.getLogger(__name__)
Task = tuple[int, int, str, str, str, str]  # i, j, key_i, key_j, path_i, path_j


class PairWorker:
    """One Ray worker: one engine, loaded once; computes pairs into the shared cache.

    Args:
        model: which checkpoint, device, precision and image size (resolved on the worker).
        settings: the planned cache settings (the worker refuses another network).
        cache_root: the shared cache directory.
        max_encodings: encoder outputs kept (LRU).
    """

    def __init__(self, model: ModelConfig, settings: PairSettings, cache_root: str,
                 max_encodings: int) -> None:
        from mast3r_ros.core.model.factory import make_engine

        self.pc = PairComputer(make_engine(model), PairCache(cache_root, settings), max_encodings)

    def run(self, tasks: list[Task]) -> list[tuple[int, int, bool]]:
        """Compute a chunk of pairs; returns (i, j, written by this call) per pair."""
        out = []
        for i, j, key_i, key_j, path_i, path_j in tasks:
            wrote = self.pc.run(i, j, key_i, key_j, _file(path_i), _file(path_j))
            out.append((i, j, wrote))
        return out

    def descriptors(self, items: list[tuple[str, str]]) -> np.ndarray:
        """(n, C) retrieval descriptors of (key, path) images."""
        return np.stack([self.pc.descriptor(key, _file(path)) for key, path in items])

    def pid(self) -> int:
        """The worker's process id (tests kill it to check the restart path)."""
        import os

        return os.getpid()


def _file(path: str) -> Callable[[], np.ndarray]:
    """A loader of one image file (read on the worker)."""
    from mast3r_ros.core.map.rgbd import read_rgb

    return lambda: read_rgb(path)


def check_reachable(address: str, timeout: float) -> None:
    """Fail fast when a Ray address (``host:port`` or ``ray://host:port``) does not answer.

    ``""`` and ``auto`` are left to Ray (local instance / ``$RAY_ADDRESS``).

    Raises:
        MappingError: malformed address, or no TCP answer within ``timeout`` seconds.
    """
    if address in ("", "auto", "local"):
        return
    url = urlparse(address if "://" in address else f"tcp://{address}")
    try:
        host, port = url.hostname, url.port
    except ValueError:
        host, port = None, None
    if not host or not port:
        raise MappingError(f"Ray address {address!r} is not host:port or ray://host:port")
    try:
        with socket.create_connection((host, port), timeout=timeout):
            pass
    except OSError as exc:
        raise MappingError(f"cannot reach the Ray cluster at {address} ({exc}); start it with "
                           "`ray start --head` or check the address and the firewall") from exc


class RayPairCompute:
    """A :class:`~.pairwise.PairCompute` running on Ray workers.

    Args:
        model: the network every worker loads (its checkpoint path must exist on the workers).
        ray_cfg: cluster address, workers, chunking and restarts.
        max_encodings: encoder outputs kept per worker.
        runtime_env: optional Ray runtime environment for the workers (e.g. ``env_vars``).
        worker_class: the worker implementation (a :class:`PairWorker` subclass; tests inject
            faults with it).

    Raises:
        CheckpointError: no checkpoint configured, or it cannot be read on the driver (its
            sha256 is the cache's model id).
    """

    def __init__(self, model: ModelConfig, ray_cfg: RayConfig, max_encodings: int = 16,
                 runtime_env: Optional[dict[str, Any]] = None,
                 worker_class: type[PairWorker] = PairWorker) -> None:
        self.model, self.cfg, self.max_encodings = model, ray_cfg, max_encodings
        self.runtime_env, self.worker_class = runtime_env, worker_class
        self._model_id: Optional[str] = None

    def settings(self, subsample: int) -> PairSettings:
        from pathlib import Path

        from mast3r_ros.core.model.factory import checkpoint_id, resolve_checkpoint

        if self._model_id is None:
            path = Path(resolve_checkpoint(self.model)).expanduser()
            self._model_id = checkpoint_id(path) if path.exists() else str(path)
        # a CPU engine runs fp16/bf16 requests in fp32; workers check that they run this
        precision = "fp32" if self.model.device == "cpu" else self.model.precision
        return PairSettings(self._model_id, precision, self.model.image_size, subsample)

    # ----------------------------------------------------------------- cluster
    def _connect(self) -> tuple[Any, bool]:
        """(the ray module, whether this call started Ray)."""
        import ray

        if ray.is_initialized():
            return ray, False
        check_reachable(self.cfg.address, self.cfg.connect_timeout)
        try:
            ray.init(address=self.cfg.address or None, runtime_env=self.runtime_env,
                     logging_level=logging.WARNING, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise MappingError(f"cannot connect to Ray at {self.cfg.address or '$RAY_ADDRESS'}: "
                               f"{exc}") from exc
        return ray, True

    def _workers(self, ray: Any, plan: MappingPlan) -> list[Any]:
        gpus = float(ray.cluster_resources().get("GPU", 0.0))
        per_gpu = self.cfg.gpus_per_worker if gpus > 0 else 0.0
        n = self.cfg.num_workers or (max(1, int(gpus // per_gpu)) if per_gpu else 1)
        actor = ray.remote(self.worker_class).options(
            num_gpus=per_gpu, num_cpus=self.cfg.cpus_per_worker,
            max_restarts=self.cfg.max_restarts, max_task_retries=self.cfg.max_restarts)
        logger.info("Ray pairwise stage: %d workers (%.1f GPU, %.1f CPU each)", n, per_gpu,
                    self.cfg.cpus_per_worker)
        return [actor.remote(self.model, plan.cache.settings, str(plan.cache.root),
                             self.max_encodings) for _ in range(n)]

    def _paths(self, plan: MappingPlan) -> list[str]:
        paths = [plan.images.path(k) for k in range(plan.num_images)]
        if any(p is None for p in paths):
            raise MappingError("the Ray pairwise stage reads images from files on the workers; "
                               "give build-map an image folder (not in-memory images or a bag)")
        if plan.temporary_cache and self.cfg.address not in ("", "local"):
            raise MappingError("a Ray cluster needs a pairwise cache on storage every worker "
                               "reaches: set cache_dir (--cache-dir)")
        return [str(p) for p in paths]

    # ----------------------------------------------------------------- compute
    def descriptors(self, plan: MappingPlan) -> np.ndarray:
        ray, started = self._connect()
        try:
            paths = self._paths(plan)
            workers = self._workers(ray, plan)
            try:
                step = self.cfg.pairs_per_task
                refs = [workers[n % len(workers)].descriptors.remote(
                    [(plan.keys[k], paths[k]) for k in range(k0, min(k0 + step, len(paths)))])
                    for n, k0 in enumerate(range(0, len(paths), step))]
                return np.concatenate(self._get(ray, refs, "retrieval descriptors"))
            finally:
                self._kill(ray, workers)
        finally:
            self._close(ray, started)

    def run(self, plan: MappingPlan, progress: Optional[ProgressFn] = None) -> ComputeStats:
        t0 = time.perf_counter()
        todo = plan.todo()
        cached = len(plan.pairs) - len(todo)
        if not todo:
            return ComputeStats(0, cached, 0.0)
        ray, started = self._connect()
        try:
            written = self._stream(ray, plan, self._paths(plan), todo, progress)
        finally:
            self._close(ray, started)
        stats = ComputeStats(written, cached, time.perf_counter() - t0)
        logger.info("Ray pairwise stage: %d pairs computed, %d already cached (%.1f s)",
                    stats.computed, stats.cached, stats.seconds)
        return stats

    def _stream(self, ray: Any, plan: MappingPlan, paths: list[str], todo: list[tuple[int, int]],
                progress: Optional[ProgressFn]) -> int:
        workers = self._workers(ray, plan)
        try:
            return self._feed(ray, workers, plan, paths, todo, progress)
        finally:
            self._kill(ray, workers)

    def _feed(self, ray: Any, workers: list[Any], plan: MappingPlan, paths: list[str],
              todo: list[tuple[int, int]], progress: Optional[ProgressFn]) -> int:
        """Keep every worker busy with at most ``tasks_in_flight`` chunks until ``todo`` is done;
        returns the number of pairs written by the workers."""
        chunks = iter_chunks(todo, self.cfg.pairs_per_task)
        in_flight: dict[Any, tuple[int, list[tuple[int, int]]]] = {}

        def submit(w: int) -> None:
            chunk = next(chunks, None)
            if chunk is not None:
                tasks = [(i, j, plan.keys[i], plan.keys[j], paths[i], paths[j]) for i, j in chunk]
                in_flight[workers[w].run.remote(tasks)] = (w, chunk)

        for w in range(len(workers)):
            for _ in range(self.cfg.tasks_in_flight):
                submit(w)
        done = written = 0
        while in_flight:
            ready, _ = ray.wait(list(in_flight), num_returns=1)
            w, chunk = in_flight.pop(ready[0])
            results = self._get(ray, ready, f"pairs {chunk[0]}..{chunk[-1]}")[0]
            written += sum(r[2] for r in results)
            done += len(chunk)
            if progress is not None:
                progress("pairs", done, len(todo))
            submit(w)
        return written

    @staticmethod
    def _get(ray: Any, refs: list[Any], what: str) -> list[Any]:
        from ray.exceptions import RayError

        try:
            return list(ray.get(refs))
        except RayError as exc:
            raise MappingError(f"the Ray pairwise stage failed on {what} after its retries: "
                               f"{type(exc).__name__}: {exc}") from exc

    @staticmethod
    def _kill(ray: Any, workers: list[Any]) -> None:
        for w in workers:
            ray.kill(w)

    @staticmethod
    def _close(ray: Any, started: bool) -> None:
        if started:
            ray.shutdown()
