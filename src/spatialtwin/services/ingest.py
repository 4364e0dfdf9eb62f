"""Garment ingest from the bytes of an upload: the format layer reads, the garment stage prepares.

`prepare_garment` is what the garment service, the CLI, benches and tests call with a file's
bytes; `garment.pipeline.prepare_source` does the work on what `gltf.garment_io` read.
"""

from __future__ import annotations

from spatialtwin.garment.binding import AuthoringBody
from spatialtwin.garment.pipeline import (
    INGEST_DEFAULTS,
    IngestOptions,
    PreparedGarment,
    Progress,
    prepare_source,
)
from spatialtwin.gltf.garment_io import read_garment_file


def _noop(stage: str, fraction: float) -> None:
    return None


def prepare_garment(
    data: bytes,
    filename: str,
    category: str,
    units: str = "auto",
    options: IngestOptions = INGEST_DEFAULTS,
    progress: Progress = _noop,
    authoring: AuthoringBody | None = None,
    estimate_from: AuthoringBody | None = None,
) -> PreparedGarment:
    """Read `data` (`filename` tells the format), then `prepare_source` it."""
    progress("reading", 0.05)
    source = read_garment_file(data, filename)
    return prepare_source(
        source,
        filename,
        category,
        units,
        options,
        progress,
        authoring=authoring,
        estimate_from=estimate_from,
    )
