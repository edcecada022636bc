"""Timing shared by the benchmark scripts: best of several runs, with the thread count reset
before each (some peers change it)."""

from __future__ import annotations

import time

import torch

THREADS = torch.get_num_threads()


def timed(fn, repeat: int):
    """Best wall time over ``repeat`` runs of ``fn`` and the value of its last run."""
    best, value = float("inf"), None
    for _ in range(repeat):
        torch.set_num_threads(THREADS)
        start = time.perf_counter()
        value = fn()
        best = min(best, time.perf_counter() - start)
    return best, value


def best_time(fn, repeat: int) -> float:
    return timed(fn, repeat)[0]


def gpu_time(fn, repeat: int) -> float:
    """Best wall time of ``fn`` on the GPU over ``repeat`` synchronised runs, after one warm-up."""
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeat):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        best = min(best, time.perf_counter() - start)
    return best
