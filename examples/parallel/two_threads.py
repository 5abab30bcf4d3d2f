"""Two Python threads, each running its own nogil kernel for a fixed time.

Thread "alpha" runs kernel_alpha for ALPHA seconds, thread "beta" runs kernel_beta for BETA
seconds (both measured by the thread itself with time.perf_counter around its own calls; the
thread's CPU time over the same calls, time.thread_time, is measured too: on a busy machine a
thread waits for a CPU, and a sampler that counts CPU time compares with that). Each prints
"<name> seconds: S cpu: C" so a test can compare the profile's shares with the measured ones.

Usage: python two_threads.py [ALPHA_S BETA_S]   (default 1.2 and 0.4)
"""

import sys
import threading
import time

import numpy as np
from numba import njit


@njit(nogil=True)
def kernel_alpha(data):
    acc = 0.0
    for x in data:
        acc += np.sqrt(x) * 1.0001  # alpha's line
    return acc


@njit(nogil=True)
def kernel_beta(data):
    acc = 0.0
    for x in data:
        acc += np.sin(x) * 0.9999  # beta's line
    return acc


def run(name: str, kernel, seconds: float, data, results: dict[str, float]) -> None:
    spent = 0.0
    cpu = 0.0
    while spent < seconds:
        start, start_cpu = time.perf_counter(), time.thread_time()
        kernel(data)
        spent += time.perf_counter() - start
        cpu += time.thread_time() - start_cpu
    results[name] = spent
    results[name + " cpu"] = cpu


def main() -> None:
    alpha_s = float(sys.argv[1]) if len(sys.argv) > 1 else 1.2
    beta_s = float(sys.argv[2]) if len(sys.argv) > 2 else 0.4
    data = np.random.default_rng(0).random(200_000)
    kernel_alpha(data[:10])  # compile both before timing
    kernel_beta(data[:10])
    results: dict[str, float] = {}
    threads = [
        threading.Thread(target=run, args=("alpha", kernel_alpha, alpha_s, data, results)),
        threading.Thread(target=run, args=("beta", kernel_beta, beta_s, data, results)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for name in ("alpha", "beta"):
        print(f"{name} seconds: {results[name]:.4f} cpu: {results[name + ' cpu']:.4f}")


if __name__ == "__main__":
    main()
