"""First-start seeding of the embedded store from the project's `assets/`.

`assets/twins/*.json` describe sample twins by their measurements and rights; the bodies are
generated here, so the repository ships a few hundred bytes instead of meshes, and a fresh
data directory becomes a working demo.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from spatialtwin.server.logs import Timer, log_event
from spatialtwin.store.twin_repository import TwinRepository

log = logging.getLogger("spatialtwin.seed")


async def seed_twins(twins: TwinRepository, assets_dir: Path) -> int:
    """Create each sample twin that the store does not have yet; returns how many."""
    created = 0
    for spec_path in sorted((assets_dir / "twins").glob("*.json")):
        spec = json.loads(spec_path.read_text())
        existing = await twins.store.get_record("twins", spec["id"])
        if existing is not None:
            continue
        with Timer() as t:
            await twins.create_from_measurements(spec)
        log_event(log, "seeded twin", twinId=spec["id"], ms=round(t.ms))
        created += 1
    return created
