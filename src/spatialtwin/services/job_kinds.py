"""Job kinds by name: what a job's `kind` runs, given its JSON payload.

    queue = InProcessJobQueue(store, kinds(services))

| kind | payload | result |
|---|---|---|
| `twin.generate` | twin id, name, measurements (m), rights, request token | the twin |
| `garment.ingest` | garment id, file name, metadata, source and staged blobs | the garment |
| `look.drape` | look id, the checked look request | the look |
| `lod.build` | subject (`twin`/`look`) and id, channel, key, level options | the set's key |
| `still.render` | look id, the checked still request, channel, key | the still |
| `product.look` | sku, twin, garment, channel, key | the look and its poster |

Every kind is idempotent: run again after an interruption it finds what its earlier attempt
stored (a twin, garment or look under the payload's id; a level set under its key) and ends
with the same result, so a job killed mid-run is retried once (`jobs.queue.KIND_RETRIES`).
A failed `garment.ingest` releases the upload it was staged with (`release_upload`); the other
kinds stage nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from spatialtwin.jobs.queue import JobKind
from spatialtwin.services.access import as_submitter
from spatialtwin.services.garments import INGEST
from spatialtwin.services.lod import BUILD
from spatialtwin.services.looks import DRAPE
from spatialtwin.services.products import PRODUCT_LOOK
from spatialtwin.services.stills import RENDER
from spatialtwin.services.twins import GENERATE

if TYPE_CHECKING:
    from spatialtwin.services.context import Services

NAMES = (GENERATE, INGEST, DRAPE, BUILD, RENDER, PRODUCT_LOOK)


def kinds(services: Services) -> dict[str, JobKind]:
    """The registry of `services`: each kind name bound to the service method that runs it,
    acting as the caller that submitted the job (`services.access.as_submitter`)."""
    garments = services.garments
    return {
        GENERATE: JobKind(as_submitter(services.twins.generate)),
        INGEST: JobKind(as_submitter(garments.ingest_job), on_failure=garments.release_upload),
        DRAPE: JobKind(as_submitter(services.looks.drape_job)),
        BUILD: JobKind(as_submitter(services.lod.build_job)),
        RENDER: JobKind(as_submitter(services.stills.render_job)),
        PRODUCT_LOOK: JobKind(as_submitter(services.products.look_job)),
    }
