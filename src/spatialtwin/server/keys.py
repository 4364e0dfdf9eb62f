"""Typed application keys for the long-lived services a handler may use."""

from __future__ import annotations

from concurrent.futures import Executor
from pathlib import Path

from aiohttp import web

from spatialtwin.store.base import Store
from spatialtwin.store.twin_repository import TwinRepository

STORE = web.AppKey("store", Store)
EXECUTOR = web.AppKey("executor", Executor)
TWINS = web.AppKey("twins", TwinRepository)
SETTINGS = web.AppKey("settings", dict)
PROJECT_ROOT = web.AppKey("project_root", Path)
