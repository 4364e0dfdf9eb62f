"""What every benchmark prints first: the machine its figures were measured on."""

from __future__ import annotations

import os
import platform

import numpy as np


def describe_machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return (
        f"machine: {cpu}; {affinity} usable cores; {platform.system()} {platform.release()}; "
        f"Python {platform.python_version()}; NumPy {np.__version__}"
    )


def pin_one_core() -> None:
    """Benchmarks quote one-core figures: keep BLAS and the process on a single core."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
