"""First-start seeding of the embedded store from the project's `assets/`.

`assets/twins/*.json` describe sample twins by their measurements and rights; the bodies are
generated here, so the repository ships a few hundred bytes instead of meshes. The sample
garments (`assets/garments/*.glb` with a JSON sidecar) go through the same ingest pipeline as
an upload. A fresh data directory thus becomes a working demo.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from spatialtwin.server.logs import Timer, log_event
from spatialtwin.store.twin_repository import TwinRepository

if TYPE_CHECKING:
    from spatialtwin.store.garment_repository import GarmentRepository

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


async def seed_garments(garments: GarmentRepository, assets_dir: Path) -> int:
    """Ingest each sample garment the store does not have yet; returns how many."""
    created = 0
    for sidecar in sorted((assets_dir / "garments").glob("*.json")):
        meta = json.loads(sidecar.read_text())
        garment_id = f"gar_sample_{sidecar.stem.replace('_', '-')}"
        if await garments.store.get_record("garments", garment_id) is not None:
            continue
        mesh_path = sidecar.with_name(meta["file"])
        metadata = {k: meta[k] for k in ("sku", "name", "category", "size_label", "fabric")}
        metadata["units"] = meta.get("units", "auto")
        with Timer() as t:
            await garments.ingest(
                mesh_path.read_bytes(), mesh_path.name, metadata, garment_id=garment_id
            )
        log_event(log, "seeded garment", garmentId=garment_id, ms=round(t.ms))
        created += 1
    return created
