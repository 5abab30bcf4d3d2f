"""Which native code is a thread pool waiting for work: samples there are idle, not work.

Numba's parallel code (``prange``, ``parallel=True`` ufuncs) runs on a threading layer:
``omp`` (GNU OpenMP, ``libgomp``), ``tbb`` (``libtbb``) or Numba's own ``workqueue``, each
behind an extension module of ``numba/np/ufunc`` (``omppool``, ``tbbpool``, ``workqueue``).
Between two parallel regions, and at the barrier that ends one, their threads wait. A thread
that waits by blocking (a futex) is seen by the sampler as off the CPU, so idle; but libgomp and
TBB spin in user space first (libgomp's default ``GOMP_SPINCOUNT`` is hundreds of thousands of
iterations, TBB spins then yields), and a sampler that counts CPU time catches them there.

Measured here (numba 0.68.1, omp layer, 2 threads, ``examples/parallel/hot_body.py``): without
this rule ~12% of a worker's samples were in libgomp with no Numba frame above, and the launching
thread had ~6% of its samples in libgomp below the ``prange`` function, i.e. charged to the
``prange`` line while it waited at the end-of-region barrier.

The rule: a sample whose innermost pc is in one of these libraries is idle, whatever called it.
The user's work in a parallel region never runs inside them: the loop body is Numba code (the
innermost frame is then JIT code, with the library only further up the stack). What the
libraries do themselves besides waiting -- handing out chunks, waking threads -- is the
overhead of the parallel launch, small next to the wait, and counted with it. Numba's own
``workqueue`` waits on condition variables (futexes: idle by blocking) and is listed so that its
few instructions of queue handling count the same way. The target's behaviour is never changed
(no ``OMP_WAIT_POLICY``): the samples are only classified.
"""

from __future__ import annotations

import os

# Shared-library name stems (the part before ".so") of thread pools and threading layers.
_POOL_LIBRARIES = ("libgomp", "libiomp5", "libomp", "libtbb")
# Numba's threading-layer extension modules: numba/np/ufunc/<name>.cpython-...so
_NUMBA_LAYERS = ("workqueue", "omppool", "tbbpool")


def is_pool_wait_library(path: str) -> bool:
    """True if native code mapped from ``path`` only schedules or waits for parallel work."""
    base = os.path.basename(path)
    stem = base.split(".so", 1)[0]
    if stem in _POOL_LIBRARIES:
        return True
    module = base.split(".", 1)[0]
    return module in _NUMBA_LAYERS and os.path.join("numba", "np", "ufunc") in path
