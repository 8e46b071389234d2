"""faiss calls on one OpenMP thread, scoped to the calling thread.

faiss parallelises a search with an OpenMP thread team. For the searches of this package (one
retrieval query: a memory-bound scan; one SIFT pair: ~2-3k x 2-3k descriptors) the team costs
more than it saves as soon as the cores are busy, which on a robot they are (other nodes, the
executor's own threads calling faiss at the same time). Measured on 2 cores under load:
10,000 x 1680 retrieval scan 16-24 ms with 2 threads vs 2.7 ms with 1; SIFT pair matching
(2734 x 2566) 148 ms vs 43 ms. OpenMP's thread count (nthreads-var) belongs to the calling thread,
so :func:`one_omp_thread` changes nothing for other threads and restores the caller's value.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

import faiss

__all__ = ["one_omp_thread"]


@contextmanager
def one_omp_thread() -> Iterator[None]:
    """Run the calling thread's faiss calls on one OpenMP thread, then restore its setting."""
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(1)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)
