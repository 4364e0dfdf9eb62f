"""Twin services: make, import, read and serve twins; the server, the CLI and jobs call these.

A twin from measurements is generated as a job (`twin.generate`: template fit, measure, GLB,
store), with staged progress, never inside a request: `request_generate` checks the request,
holds the twin's id (a second create of it is a 409 while the first runs) and queues the job.
An imported body is made within its request (`import_file`). Either way the blobs are written
first and the record last; if anything fails the blobs this call created are removed, so a
refused or failed create leaves the store as it was.

An unrigged human scan is auto-rigged and then takes the shipped hm08 template's skin weights
(`body.rig_transfer`), so garments bound on hm08 read the same body parts on it as on every
generated twin; the template is a format concern (`gltf.template_npz`), so it is joined to the
importer here rather than in `body/`. A twin's body is read from its NPZ blob once and kept in
the services' cache under that blob's hash.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spatialtwin.body.importer import ImportedTwin, import_scene
from spatialtwin.body.measurements import Measurements
from spatialtwin.body.parametric import create_twin_body, measured
from spatialtwin.body.pose import Pose, PoseError
from spatialtwin.body.twin_body import TwinBody
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.body_arrays import body_from_npz, body_to_npz
from spatialtwin.gltf.read_scene import read_scene
from spatialtwin.gltf.template_npz import shipped_template
from spatialtwin.gltf.twin_glb import twin_to_glb
from spatialtwin.rights.license import Rights, now_utc, provenance
from spatialtwin.services.access import license_record, submitter
from spatialtwin.services.views import twin_view
from spatialtwin.store.twin_repository import body_key, twin_exists

if TYPE_CHECKING:
    from spatialtwin.services.access import Access
    from spatialtwin.services.base import ServiceContext

GENERATE = "twin.generate"
SAFE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
Progress = Callable[[str, float], None]


def _noop(stage: str, fraction: float) -> None:
    return None


def import_twin(
    data: bytes,
    filename: str,
    *,
    units: str = "auto",
    joint_map: dict[str, str] | None = None,
) -> ImportedTwin:
    """A GLB/glTF/OBJ/PLY body as a canonical twin (metres, +Y up, facing +Z, feet on y = 0)."""
    return import_body(
        data,
        filename=filename,
        units=units,
        joint_map=joint_map,
        template=shipped_template().body,
    )


def import_body(
    path_or_bytes: str | Path | bytes,
    *,
    filename: str | None = None,
    units: str = "auto",
    joint_map: dict[str, str] | None = None,
    template: TwinBody | None = None,
) -> ImportedTwin:
    """Read a GLB/glTF/OBJ/PLY body file and import it as a canonical twin (metres, +Y up,
    facing +Z): the format is read in `gltf`, the arrays imported in `body.importer`.

    An unrigged scan is auto-rigged; with `template` (the shipped hm08 body) it then takes the
    template's skin weights (`body.rig_transfer`), so every human twin shares one partition.
    """
    # (1) Read.
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        if not filename:
            raise SpatialTwinError(
                "missing_filename",
                "a filename is needed to tell the format "
                "of uploaded bytes (.glb, .gltf, .obj, .ply)",
            )
        data = bytes(path_or_bytes)
    else:
        path = Path(path_or_bytes)
        data = path.read_bytes()
        filename = filename or path.name
    return import_scene(
        read_scene(data, filename), filename, units=units, joint_map=joint_map, template=template
    )


def check_twin_id(value: Any) -> str | None:
    """None, or an id a client may give a twin (what the store can name a record)."""
    if value is None:
        return None
    if not isinstance(value, str) or not SAFE_ID.match(value) or ".." in value:
        raise SpatialTwinError(
            "invalid_id",
            "a twin id is 1–128 letters, digits, '_', '.' or '-' (no '..')",
            {"field": "id"},
        )
    return value


def check_name(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise SpatialTwinError("invalid_request", "name must be a string", {"field": "name"})
    return value


def generate_twin_body(measurements: Measurements, template: Any = None) -> tuple[TwinBody, str]:
    """A twin's body made from tape measurements on `template` (default: the shipped hm08
    template); returns the body and the template's name."""
    template = template if template is not None else shipped_template()
    return create_twin_body(measurements, template.body), str(template.name)


def twin_file_glb(body: TwinBody, provenance_json: dict[str, Any]) -> bytes:
    """The twin as a standalone GLB (the CLI's output), carrying `provenance_json`."""
    return twin_to_glb(body, provenance=provenance_json)


def measured_json(body: TwinBody) -> dict[str, float]:
    """The body's height and girths as a tailor's tape takes them, metres."""
    return measured(body).to_json()


def _unique_key(twin_id: str) -> str:
    return f"twin.generate:{twin_id}"


class TwinService:
    def __init__(self, services: ServiceContext, access: Access) -> None:
        self.services = services
        self.access = access
        self.records = services.twin_records

    async def list(self) -> list[dict[str, Any]]:
        return await self.records.list()

    async def get(self, twin_id: str) -> dict[str, Any]:
        return await self.records.get(twin_id)

    # --- making twins --------------------------------------------------------------------------

    async def request_generate(self, payload: Any) -> dict[str, Any]:
        """Check a create-from-measurements request and queue its job (`twin.generate`);
        returns the job. Everything that can be refused is refused here, before any work."""
        if not isinstance(payload, dict):
            raise SpatialTwinError("invalid_request", "expected a JSON object")
        twin_id = check_twin_id(payload.get("id")) or f"twn_{uuid.uuid4().hex[:12]}"
        name = check_name(payload.get("name"))
        measurements = Measurements.from_json(payload.get("measurements"))
        rights = Rights.from_json(payload)
        self.access.require_agency_of(rights.owner.agency)
        if await self.records.exists(twin_id):
            raise twin_exists(twin_id)
        job_payload = {
            "twin_id": twin_id,
            "name": name,
            "measurements": measurements.to_json(),
            "rights": rights.to_json(),
            "request": uuid.uuid4().hex,
            "caller": submitter(),  # the agency that asked reads the job
        }
        job, created = await self.services.jobs.submit_unique(
            GENERATE, job_payload, _unique_key(twin_id)
        )
        if not created:  # another create of this id is queued or running
            raise twin_exists(twin_id)
        return job

    async def generate(self, payload: dict[str, Any], progress: Progress = _noop) -> dict[str, Any]:
        """The `twin.generate` job: fit the template, measure, write, store; the twin as the
        API shows it. Run again after an interruption, it finds its own twin and ends."""
        twin_id = str(payload["twin_id"])
        existing = await self.records.find(twin_id)
        if existing is not None:
            if existing.get("source", {}).get("request") == payload.get("request"):
                return twin_view(existing)
            raise twin_exists(twin_id)
        measurements = Measurements.from_json(payload["measurements"])
        rights = Rights.from_json(payload["rights"])
        progress("template", 0.05)
        template = self.services.template
        if template is None:
            template = await self.services.run(shipped_template)
        progress("fitting", 0.1)
        body = await self.services.run(create_twin_body, measurements, template.body)
        source = {
            "kind": "measurements",
            "requested": measurements.to_json(),
            "template": template.name,
            "request": payload.get("request"),
        }
        record = await self._save(payload.get("name"), body, rights, source, twin_id, progress)
        return twin_view(record)

    async def create_from_body(
        self,
        name: str | None,
        body: TwinBody,
        rights: Rights,
        source: dict[str, Any],
        twin_id: str | None = None,
    ) -> dict[str, Any]:
        """Store a twin made elsewhere (an import, a test's generated body)."""
        return await self._save(name, body, rights, source, twin_id)

    async def import_file(
        self,
        name: str | None,
        data: bytes,
        filename: str,
        rights: Rights,
        *,
        units: str = "auto",
        joint_map: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Import a GLB/glTF/OBJ/PLY body as a twin and store it."""
        self.access.require_agency_of(rights.owner.agency)
        imported = await self.services.run(
            lambda: import_twin(data, filename, units=units, joint_map=joint_map)
        )
        source = {"kind": "import", "filename": filename, **imported.report.to_json()}
        return await self._save(name, imported.body, rights, source)

    async def _save(
        self,
        name: Any,
        body: TwinBody,
        rights: Rights,
        source: dict[str, Any],
        twin_id: str | None = None,
        progress: Progress = _noop,
    ) -> dict[str, Any]:
        twin_id = str(twin_id or f"twn_{uuid.uuid4().hex[:12]}")
        if await self.records.exists(twin_id):  # before seconds of work; the create re-checks
            raise twin_exists(twin_id)
        progress("measuring", 0.6)
        got = await self.services.run(measured, body)
        record: dict[str, Any] = {
            "id": twin_id,
            "name": str(name or rights.owner.model)[:200],
            "created_at": now_utc().isoformat(),
            "measurements": got.to_json(),
            "source": source,
            "vertex_count": body.vertex_count,
            "triangle_count": len(body.faces),
            "rest_pose": "A-pose (upper arms 45° below horizontal)"
            if source.get("kind") == "measurements"
            else "as imported",
            "skeleton": body.skeleton.to_json(),
            **rights.to_json(),
            "license": license_record(rights.license),
            "disclosure": rights.disclosure(),
        }
        store = self.services.store
        created: list[str] = []
        try:
            npz_key, new = await store.put_blob(await self.services.run(body_to_npz, body))
            if new:
                created.append(npz_key)
            progress("writing", 0.75)
            glb = await self.services.run(lambda: twin_to_glb(body, provenance=provenance(record)))
            glb_key, new = await store.put_blob(glb)
            if new:
                created.append(glb_key)
            record["blobs"] = {"body_npz": npz_key, "bind_glb": glb_key}
            record["glb_bytes"] = len(glb)
            progress("storing", 0.9)
            await self.records.create(record)
        except BaseException:
            for key in created:
                await store.delete_blob(key)
            raise
        self.services.cache.put(("body", npz_key), body)
        return record

    # --- using twins ---------------------------------------------------------------------------

    async def body(self, record: dict[str, Any]) -> TwinBody:
        """The twin's body, read from its NPZ blob (cached under the blob's hash)."""
        key = body_key(record)
        cached = self.services.cache.get(("body", key))
        if cached is not None:
            return cached
        data = await self.services.store.get_blob(key)
        if data is None:
            raise SpatialTwinError(
                "twin_body_missing",
                "the twin's body data is missing",
                {"id": record["id"]},
                status=500,
            )
        body = await self.services.run(body_from_npz, data)
        return self.services.cache.put(("body", key), body)

    @staticmethod
    def parse_pose(checked: Any) -> Pose:
        """A pose whose JSON shape the HTTP layer checked, as a `Pose` (422 `invalid_pose`
        when its values are not one: an unknown joint, a zero quaternion)."""
        try:
            return Pose.from_json(checked)
        except PoseError as exc:
            raise SpatialTwinError("invalid_pose", str(exc), status=422) from exc

    async def body_glb(self, twin_id: str, channel: str, pose: Pose | None) -> bytes:
        """The twin as GLB for `channel`, posed; refused outside its license."""
        record = await self.access.twin_for_use(twin_id, channel)
        body = await self.body(record)
        return await self.services.run(
            lambda: twin_to_glb(body, pose=pose, provenance=provenance(record))
        )

    async def update_license(self, twin_id: str, changes: Any) -> dict[str, Any]:
        return await self.access.change_license(twin_id, changes)
