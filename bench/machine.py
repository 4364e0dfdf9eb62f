"""What every benchmark prints first (the machine its figures were measured on), and the
little every bench that starts a server needs."""

from __future__ import annotations

import os
import platform
from typing import Any

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


def free_port() -> int:
    """A free TCP port on loopback for a server a bench starts."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(process: Any, timeout_s: float = 20.0) -> None:
    """SIGTERM a server a bench started (it drains), SIGKILL it if it does not end in time."""
    import subprocess

    process.terminate()
    try:
        process.wait(timeout_s)
    except subprocess.TimeoutExpired:
        process.kill()
