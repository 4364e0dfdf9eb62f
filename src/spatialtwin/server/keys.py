"""Typed application keys for the long-lived services a handler may use (every AppKey)."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from aiohttp import web

from spatialtwin.jobs.runner import InProcessJobQueue
from spatialtwin.server.seed import SeedState
from spatialtwin.services.context import Services
from spatialtwin.services.garments import GarmentService
from spatialtwin.services.lod import LodService
from spatialtwin.services.looks import LookService
from spatialtwin.services.twins import TwinService
from spatialtwin.store.base import Store

STORE = web.AppKey("store", Store)
EXECUTOR = web.AppKey("executor", Executor)
SERVICES = web.AppKey("services", Services)
JOBS = web.AppKey("jobs", InProcessJobQueue)
TWINS = web.AppKey("twins", TwinService)
GARMENTS = web.AppKey("garments", GarmentService)
LOOKS = web.AppKey("looks", LookService)
LOD = web.AppKey("lod", LodService)
SEED = web.AppKey("seed", SeedState)
SETTINGS = web.AppKey("settings", dict)
PROJECT_ROOT = web.AppKey("project_root", Path)
