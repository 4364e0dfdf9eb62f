"""Typed application keys for the long-lived services a handler may use (every AppKey).

Imports nothing heavy at run time (the service types are for type checkers only): the HTTP
layer must listen before the numerics under the services are imported (`server.loading`).

`STORE`, `EXECUTOR`, `SETTINGS`, `PROJECT_ROOT` (and `SEED` when seeding) are set before the
server listens, with `server.loading.LOADER`: a handler reaches the services through it
(`server.loading.ready_services`), which waits while they are still loading; `SERVICES`,
`JOBS`, `TWINS`, `GARMENTS`, `LOOKS` and `LOD` are set only by an app that opens its
services before it listens (`create_app`'s default, which tests use to reach into the app).
A key whose value is a server module's own type lives in that module (`loading.LOADER`,
`routes_mirror.MIRROR`), so this module imports no server module but `seed`.
"""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING

from aiohttp import web

from spatialtwin.server.seed import SeedState
from spatialtwin.store.base import Store

if TYPE_CHECKING:
    from spatialtwin.jobs.runner import InProcessJobQueue
    from spatialtwin.services.context import Services
    from spatialtwin.services.garments import GarmentService
    from spatialtwin.services.lod import LodService
    from spatialtwin.services.looks import LookService
    from spatialtwin.services.twins import TwinService

STORE = web.AppKey("store", Store)
EXECUTOR = web.AppKey("executor", Executor)
SEED = web.AppKey("seed", SeedState)
SETTINGS = web.AppKey("settings", dict)
PROJECT_ROOT = web.AppKey("project_root", Path)

SERVICES: web.AppKey[Services] = web.AppKey("services")
JOBS: web.AppKey[InProcessJobQueue] = web.AppKey("jobs")
TWINS: web.AppKey[TwinService] = web.AppKey("twins")
GARMENTS: web.AppKey[GarmentService] = web.AppKey("garments")
LOOKS: web.AppKey[LookService] = web.AppKey("looks")
LOD: web.AppKey[LodService] = web.AppKey("lod")
