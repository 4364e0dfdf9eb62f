"""The services of one process: a store, an executor for CPU work, a job queue, the options.

The server, the CLI and a worker each build one `Services` over their store and call the same
service methods on it:

    services = await Services.open(EmbeddedStore("var/data"), settings={"look_max_frames": 40})
    queue = InProcessJobQueue(services.store, job_kinds.kinds(services))
    services.attach_jobs(queue)
    record = await services.twins.get("twn_sample_ava")

`open` migrates older records in place first (`store.schema.migrate`). Options come from
`settings` (the same keys the server takes); the repositories are plain record access; the
content-keyed cache is shared by every service.
"""

from __future__ import annotations

from typing import Any

from spatialtwin.services.access import Access
from spatialtwin.services.base import ServiceContext
from spatialtwin.services.devices import DeviceService
from spatialtwin.services.garments import GarmentService
from spatialtwin.services.lod import LodService
from spatialtwin.services.looks import LookService
from spatialtwin.services.products import ProductOptions, ProductService
from spatialtwin.services.stills import StillService
from spatialtwin.services.twins import TwinService
from spatialtwin.store.base import Store
from spatialtwin.store.schema import migrate


class Services(ServiceContext):
    """The shared context (`services.base`) with every service built on it, each given the
    services it uses."""

    def __init__(self, store: Store, **kwargs: Any) -> None:
        super().__init__(store, **kwargs)
        self.access = Access(self)
        self.twins = TwinService(self, self.access)
        self.garments = GarmentService(self, self.access, self.twins)
        self.looks = LookService(self, self.access, self.twins, self.garments)
        self.lod = LodService(self, self.access, self.looks)
        self.stills = StillService(self, self.access, self.looks)
        options = ProductOptions.from_settings(kwargs.get("settings") or {})
        self.products = ProductService(
            self, self.access, self.garments, self.looks, self.lod, self.stills, options
        )
        self.devices = DeviceService(self)

    @classmethod
    async def open(cls, store: Store, **kwargs: Any) -> Services:
        """Services over `store`, after upgrading its older records to today's schema."""
        await migrate(store)
        return cls(store, **kwargs)
