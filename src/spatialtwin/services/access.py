"""The one door every use of a twin passes: license channel and window, revocation.

A twin is a person's likeness, used only under the license they consented to. Every service
that serves or works with a twin's body — its GLB, a look, a preview, a level manifest, a
level file, a drape job — asks here first, and nothing else in the code base decides
(`tests/test_access.py` checks both: each twin-using route refuses each rule, and no call of
`rights.license.check_use` lives outside this module). Roles and metering (#11) plug in here.

- `check(twin, channel)`: the decision (`rights.license.check_use`): 410 once revoked, 400 for an
  unknown channel, 403 outside the licensed channels or the validity window.
- `twin_for_use(twin_id, channel)`: the twin record, read now, if that use is allowed.
- `twins_for_use(channel)`: every twin usable in `channel` now (a mirror picking the twin
  closest to a shopper's height chooses among these only).
- `check_level_file(owners, channel)`: a level file shows these twins; it is refused while any
  of them is outside its window (or, with a channel, its channels), and once any is revoked.
- `check_ar_file(owners)`: an AR file (a USDZ for AR Quick Look) is `ar` use, whoever asks for
  it and whatever channel the request names: it is served only while every twin it shows is
  licensed for `ar`.
- `change_license(twin_id, changes)`: channels and validity change by compare-and-set;
  revocation is final (a revoked license is never reinstated, by any value) and withdraws the
  twin's level files before it answers.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from spatialtwin.errors import RecordChangedError, SpatialTwinError
from spatialtwin.rights.license import License, check_use, now_utc
from spatialtwin.store.schema import LICENSE_VERSION

if TYPE_CHECKING:
    from spatialtwin.services.base import ServiceContext

AR_CHANNEL = "ar"  # placing a twin in a room (USDZ, Scene Viewer): the license's `ar` channel
LICENSE_FIELDS = ("channels", "valid_from", "valid_until", "revoked", "terms", "fee_per_use_eur")
CAS_ATTEMPTS = 4


class Access:
    def __init__(self, services: ServiceContext) -> None:
        self.services = services

    def check(self, twin: dict[str, Any], channel: str) -> None:
        """Raise unless `twin` may be used in `channel` now."""
        check_use(twin, channel)

    async def twin_for_use(self, twin_id: str, channel: str) -> dict[str, Any]:
        """The twin record (404 when unknown), refused unless usable in `channel` now."""
        twin = await self.services.twin_records.get(twin_id)
        self.check(twin, channel)
        return twin

    async def twins_for_use(self, channel: str) -> list[dict[str, Any]]:
        """Every twin record usable in `channel` now (revoked, expired or unlicensed left out)."""
        usable = []
        for twin in await self.services.twin_records.list():
            try:
                self.check(twin, channel)
            except SpatialTwinError:
                continue
            usable.append(twin)
        return usable

    async def check_level_file(self, owners: list[str], channel: str | None) -> None:
        """Refuse a level file while a twin it shows may not be used: revoked (410), outside
        its window (403) or, with `channel`, outside its channels. `owners` may hold look ids
        too; every file lists the twin it shows among them."""
        twins = [t for t in [await self.services.twin_records.find(o) for o in owners] if t]
        if not twins:
            raise SpatialTwinError(
                "twin_not_found",
                "the twin this level shows is gone",
                {"owners": owners},
                status=404,
            )
        for twin in twins:
            # Without a channel, any licensed one: the window and revocation still decide.
            self.check(twin, channel if channel is not None else twin["license"]["channels"][0])

    async def check_ar_file(self, owners: list[str]) -> None:
        """Refuse an AR file (USDZ) unless every twin it shows may be used in `ar` now."""
        await self.check_level_file(owners, AR_CHANNEL)

    async def change_license(self, twin_id: str, changes: Any) -> dict[str, Any]:
        """Change channels/validity, or revoke (irreversible).

        Read, check, compare-and-set: a record changed by another writer between the read and
        the write is read again and the change re-checked against it (so a revocation that
        lands meanwhile is never undone); a refused change writes nothing. A revocation
        withdraws the twin's level files before this returns, and is announced on the
        store's `twins` channel.
        """
        records = self.services.twin_records
        for _ in range(CAS_ATTEMPTS):
            record, revision = await records.get_with_revision(twin_id)
            record["license"] = changed_license(twin_id, record["license"], changes)
            try:
                await records.replace(record, revision)
            except RecordChangedError:
                continue
            break
        else:
            raise RecordChangedError("twins", twin_id)
        revoked = bool(record["license"]["revoked"])
        if revoked:
            await self.services.lod_records.withdraw_owner(twin_id)
        await self.services.store.publish(
            "twins", {"event": "license_changed", "twinId": twin_id, "revoked": revoked}
        )
        return record


def changed_license(twin_id: str, stored: dict[str, Any], changes: Any) -> dict[str, Any]:
    """The stored license with `changes` applied and checked; raises, changing nothing."""
    if not isinstance(changes, dict):
        raise SpatialTwinError("invalid_request", "expected a JSON object")
    unknown = sorted(set(changes) - set(LICENSE_FIELDS))
    if unknown:
        raise SpatialTwinError(
            "invalid_license",
            f"unknown license fields {unknown}",
            {"allowed": sorted(LICENSE_FIELDS)},
            status=422,
        )
    if "revoked" in changes and not isinstance(changes["revoked"], bool):
        raise SpatialTwinError(
            "invalid_license",
            "revoked must be true or false",
            {"field": "revoked", "expected": "true or false"},
        )
    if stored.get("revoked") and changes.get("revoked", True) is not True:
        raise SpatialTwinError(
            "license_revoked",
            "a revoked license cannot be reinstated; the owner must grant a new one",
            {"twinId": twin_id},
            status=409,
        )
    checked = License.from_json({k: v for k, v in {**stored, **changes}.items() if k in _KEPT})
    if checked.revoked and not stored.get("revoked"):
        checked.revoked_at = now_utc().isoformat()
    return license_record(checked)


def license_record(lic: License) -> dict[str, Any]:
    """A license as the twin record stores it (with its own schema version)."""
    return {**asdict(lic), "schema_version": LICENSE_VERSION}


_KEPT = (*LICENSE_FIELDS, "id", "revoked_at")
