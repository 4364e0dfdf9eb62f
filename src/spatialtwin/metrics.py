"""The process's Prometheus metrics: what the layers observe while they work.

One set per process on `prometheus_client`'s default registry (Prometheus scrapes a
process, and a server's workers each have their own `/metrics`), so any layer may observe
into them without holding a server: the mirror loop its per-stage times from its cloth
thread (`observe` is thread-safe and takes about a microsecond), the HTTP layer its request
latencies. What is a state rather than an event (sessions open, jobs queued, cache sizes)
is read when scraped (`server.metrics`), not kept here.

Buckets are seconds. The mirror's stages live inside a 33 ms frame, so their buckets are
finer than the requests', which reach up to the 60 s of a large upload.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_BUCKETS_S = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0)
FRAME_BUCKETS_S = (0.001, 0.002, 0.004, 0.008, 0.012, 0.016, 0.024, 0.033, 0.05, 0.1, 0.25, 1.0)

REQUEST_SECONDS = Histogram(
    "spatialtwin_http_request_duration_seconds",
    "HTTP request latency, handler and middleware, by route template (not the raw path: "
    "ids would make a series per record).",
    ("method", "route", "status"),
    buckets=REQUEST_BUCKETS_S,
)
MIRROR_STAGE_SECONDS = Histogram(
    "spatialtwin_mirror_stage_seconds",
    "Mirror frame time per pipeline stage (decode, landmarks, track, skin, cloth, encode) and "
    "from a frame's arrival to its result (total).",
    ("stage",),
    buckets=FRAME_BUCKETS_S,
)
MIRROR_RESULTS = Counter("spatialtwin_mirror_results_total", "Mirror results made.")
MIRROR_DROPPED_FRAMES = Counter(
    "spatialtwin_mirror_dropped_frames_total",
    "Camera frames dropped by mirror sessions (latest frame wins: a stale frame is dropped, "
    "not queued).",
)
MIRROR_STAGES = ("decode", "landmarks", "track", "skin", "cloth", "encode", "total")


def observe_mirror_result(timings_ms: dict[str, float], dropped_since_last: int) -> None:
    """One mirror result: its stage times (milliseconds, as the session reports them)."""
    for stage in MIRROR_STAGES:
        value = timings_ms.get(stage)
        if value is not None and value >= 0.0:
            MIRROR_STAGE_SECONDS.labels(stage).observe(value / 1e3)
    MIRROR_RESULTS.inc()
    if dropped_since_last > 0:
        MIRROR_DROPPED_FRAMES.inc(dropped_since_last)
