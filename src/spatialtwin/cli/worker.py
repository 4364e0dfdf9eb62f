"""`spatialtwin worker`: run jobs for a fleet (`--redis URL --blobs DIR`, Dramatiq messages) or
beside a server on the embedded store (`--data DIR`, polling); see `spatialtwin.worker`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    from spatialtwin.worker import add_arguments

    p = sub.add_parser("worker", help="run jobs: a fleet's (--redis) or the embedded store's")
    add_arguments(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from spatialtwin.worker import run as run_worker

    return run_worker(args)
