"""Shared fixtures: the real test data beside the repo, generated twins, a live app."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient

from spatialtwin.body.parametric import Measurements, create_twin_body
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.gltf.template_npz import shipped_template

pytest_plugins = ["tests.browser_harness", "tests.mirror_fixtures", "tests.redis_server"]

# Tests poll jobs at 20 Hz with one admin token; servers they start (here or as processes)
# take no rate limit unless a test sets one (tests/test_rate_limit.py does).
os.environ.setdefault("SPATIALTWIN_RATE_LIMIT_PER_MINUTE", "0")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"

# Modules whose tests judge time (rates, latencies, "within a second", a kill and a retry) or
# drive chromium: `make test` runs them alone, after the rest has run on both cores
# (`-n 2 -m "not serial"`, then `-m serial`), so a neighbour's work never decides a verdict.
SERIAL_MODULES = frozenset(
    {
        "test_cloth_motion", "test_fleet", "test_fleet_live", "test_glb_reader",
        "test_hostile_http", "test_live_session", "test_live_upright", "test_lod_browser",
        "test_metering", "test_metrics", "test_mirror_bad_clients", "test_mirror_page",
        "test_mirror_ws", "test_native_logs", "test_outfit_screenshots", "test_product_page",
        "test_products_api", "test_redis_jobs", "test_redis_serve", "test_seed",
        "test_server_lifecycle", "test_server_startup", "test_web_fitmap",
        "test_web_merchandiser", "test_web_stage", "test_web_twin_viewer", "test_worker_fleet",
    }
)  # fmt: skip


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        module = getattr(item, "module", None)
        name = module.__name__.rsplit(".", 1)[-1] if module is not None else ""
        if name in SERIAL_MODULES or item.get_closest_marker("browser") is not None:
            item.add_marker(pytest.mark.serial)


AVERAGE = Measurements(
    height_m=1.76, chest_m=0.92, waist_m=0.74, hips_m=0.98, inseam_m=0.81, shoulder_m=0.40
)


class AdminTestClient(TestClient):
    """The test client every `aiohttp_client` makes: it sends an admin token by default (made
    by the app's own key ring once the app started), so tests of what a route does are not
    tests of who may call it; tests of that (tests/test_policy.py) pass their own tokens, or
    `headers={"Authorization": ...}` per request."""

    async def start_server(self) -> None:
        await super().start_server()
        app = getattr(self.server, "app", None)
        if app is None or "Authorization" in self.session.headers:
            return
        from spatialtwin.server.auth import KEYRING

        ring = app.get(KEYRING)
        if ring is not None:
            token = ring.issue("admin", None, subject="tests")
            self.session.headers["Authorization"] = f"Bearer {token}"


@pytest.fixture
def aiohttp_client_cls() -> type[TestClient]:
    return AdminTestClient


def shared(*parts: str) -> Path:
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"test data {path} is not beside the repository")
    return path


def generated_twin(m: Measurements) -> TwinBody:
    """A twin generated from measurements on the shipped hm08 template, as the server does."""
    return create_twin_body(m, shipped_template().body)


@pytest.fixture(scope="session")
def average_body() -> TwinBody:
    return generated_twin(AVERAGE)


HOSTILE_RIGHTS = {
    "owner": {"model": "Mara Test", "agency": "North Models"},
    "license": {
        "id": "lic_hostile",
        "channels": ["ecommerce", "mirror"],
        "valid_from": "2026-01-01T00:00:00+00:00",
    },
    "consent": {"given_at": "2026-01-01T00:00:00+00:00"},
}


@pytest.fixture(scope="session")
def twin_data_template(tmp_path_factory, average_body) -> tuple[Path, str]:
    """A data directory holding one twin made from `average_body` (made once per session;
    `twin_api` copies it, so each test gets its own store in ~10 ms instead of ~2 s)."""
    import asyncio

    from spatialtwin.rights.license import Rights
    from spatialtwin.services.context import Services
    from spatialtwin.store.embedded import EmbeddedStore

    root = tmp_path_factory.mktemp("twin-data-template")

    async def make() -> str:
        twins = Services(EmbeddedStore(root)).twins
        record = await twins.create_from_body(
            "Mara", average_body, Rights.from_json(HOSTILE_RIGHTS), {"kind": "measurements"}
        )
        return str(record["id"])

    return root, asyncio.run(make())


@pytest.fixture
async def twin_api(aiohttp_client, tmp_path, twin_data_template):
    """A live app on an embedded store (no seeding) holding one twin made from `average_body`;
    the client carries `twin_id` and `store`."""
    import shutil

    from spatialtwin.server.app import create_app
    from spatialtwin.server.keys import STORE

    template, twin_id = twin_data_template
    shutil.copytree(template, tmp_path / "data")
    app = create_app(tmp_path / "data", seed=False)
    client = await aiohttp_client(app)
    client.twin_id = twin_id
    client.store = app[STORE]
    return client
