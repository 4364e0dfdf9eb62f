"""Usage metering for pay-per-use: every use served is an event, written before the answer.

A twin's model and agency are paid per use, so each use the server serves is a usage event:

    {"id": "use_…", "at": "2026-03-01T12:00:00.123456+00:00", "kind": "look",
     "twin": "twn_…", "license": "lic_…", "brand": "acme", "agency": "North Models",
     "model": "Mara Test", "channel": "ecommerce", "region": "DE", "count": 1,
     "fee_per_use_eur": 0.4, "session": "…"}

| kind | when |
|---|---|
| `look` | a look's GLB is served |
| `level` | a level file is served, the first per shopper session and level set |
| `ar` | an AR file (USDZ) is served: an AR launch |
| `still` | a still's file is served |
| `mirror_minute` | each started minute of a live mirror session |

`record` appends the event to the store's `usage` log (`Store.event_log`; the embedded store
fsyncs it) and returns only then, so the handler that awaits it answers after the event is
durable: a server killed before answering leaves no event, one killed after leaves it. The
`brand` is the license's licensee (or, under an open license, the brand whose content was
served, or the brand that asked); `fee_per_use_eur` is the license's at the time of the use.

`report(agency, from, to, group)` adds the agency's events in `[from, to)` up by the fields in
`group` (`twin`, `license`, `channel`, `brand`, `kind`): events, uses (`count`) and fees,
summed exactly in decimal and rounded to the cent only at the end (`fee_eur`); `report_csv`
is the same rows as CSV. Level downloads are counted once per session by this process
(a bounded memory of the sessions seen); a fleet's servers each remember their own.
"""

from __future__ import annotations

import csv
import io
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from spatialtwin.errors import SpatialTwinError
from spatialtwin.rights.license import now_utc
from spatialtwin.store.base import Store

USAGE = "usage"
KINDS = ("look", "level", "ar", "still", "mirror_minute")
GROUP_FIELDS = ("twin", "license", "channel", "brand", "kind")
DEFAULT_GROUP = ("twin", "license", "channel")
MAX_SESSIONS_REMEMBERED = 100_000
CENT = Decimal("0.01")


def _fee(event: dict[str, Any]) -> Decimal:
    fee = event.get("fee_per_use_eur")
    return Decimal(0) if fee is None else Decimal(str(fee)) * int(event.get("count", 1))


class Metering:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._seen: OrderedDict[tuple[str, ...], None] = OrderedDict()

    def first_in_session(self, key: tuple[str, ...]) -> bool:
        """True the first time `key` (session, level set) is seen by this process."""
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        while len(self._seen) > MAX_SESSIONS_REMEMBERED:
            self._seen.popitem(last=False)
        return True

    async def record(
        self,
        kind: str,
        twin: dict[str, Any],
        lic: dict[str, Any],
        channel: str,
        *,
        brand: str | None = None,
        region: str | None = None,
        session: str | None = None,
        count: int = 1,
    ) -> dict[str, Any]:
        """Append one usage event (durable when this returns) and return it."""
        assert kind in KINDS, kind
        owner = twin.get("owner") or {}
        event = {
            "id": f"use_{uuid.uuid4().hex}",
            "at": now_utc().isoformat(),
            "kind": kind,
            "twin": twin["id"],
            "license": lic.get("id"),
            "brand": lic.get("licensee") or brand,
            "agency": owner.get("agency"),
            "model": owner.get("model"),
            "channel": channel,
            "region": region,
            "count": int(count),
            "fee_per_use_eur": lic.get("fee_per_use_eur"),
            "session": session,
        }
        await self.store.event_log(USAGE).append(event)
        return event

    async def events(self) -> list[dict[str, Any]]:
        return await self.store.event_log(USAGE).read()

    async def report(
        self,
        agency: str,
        start: datetime | None,
        end: datetime | None,
        group: tuple[str, ...],
        *,
        model: str | None = None,
    ) -> dict[str, Any]:
        """The agency's usage in [start, end) grouped by `group`, with fee totals; with
        `model`, only the uses of that model's twins."""
        rows: dict[tuple[Any, ...], dict[str, Any]] = {}
        totals = {"events": 0, "count": 0, "fee": Decimal(0)}
        for event in await self.events():
            if event.get("agency") != agency or (model is not None and event.get("model") != model):
                continue
            at = _time(event.get("at"))
            if at is None or (start is not None and at < start) or (end is not None and at >= end):
                continue
            key = tuple(event.get(field) for field in group)
            row = rows.setdefault(
                key,
                {**dict(zip(group, key, strict=True)), "events": 0, "count": 0, "fee": Decimal(0)},
            )
            for target in (row, totals):
                target["events"] += 1
                target["count"] += int(event.get("count", 1))
                target["fee"] += _fee(event)
        ordered = [rows[k] for k in sorted(rows, key=lambda k: tuple(str(v) for v in k))]
        return {
            "agency": agency,
            **({"model": model} if model is not None else {}),
            "from": None if start is None else start.isoformat(),
            "to": None if end is None else end.isoformat(),
            "group": list(group),
            "rows": [_money(row) for row in ordered],
            "totals": _money(totals),
        }


def _money(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: v for k, v in row.items() if k != "fee"}
    out["fee_eur"] = float(row["fee"].quantize(CENT, rounding=ROUND_HALF_UP))
    out["fee_eur_exact"] = str(row["fee"].normalize()) if row["fee"] else "0"
    return out


def _time(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def report_window(start: Any, end: Any) -> tuple[datetime | None, datetime | None]:
    """`from` and `to` of a report request: ISO 8601 times (a date alone is its midnight
    UTC), either may be absent; 422 when unreadable or `to` is not after `from`."""
    parsed = []
    for name, value in (("from", start), ("to", end)):
        if value in (None, ""):
            parsed.append(None)
            continue
        t = _time(value) if isinstance(value, str) and len(value) <= 40 else None
        if t is None:
            raise SpatialTwinError(
                "invalid_usage_query",
                f"{name} must be an ISO 8601 time or date",
                {"field": name},
                status=422,
            )
        parsed.append(t)
    if parsed[0] is not None and parsed[1] is not None and parsed[1] <= parsed[0]:
        raise SpatialTwinError(
            "invalid_usage_query", "to must be after from", {"from": start, "to": end}, status=422
        )
    return parsed[0], parsed[1]


def report_group(value: Any) -> tuple[str, ...]:
    if value in (None, ""):
        return DEFAULT_GROUP
    fields = tuple(f.strip() for f in str(value)[:200].split(",") if f.strip())
    if not fields or any(f not in GROUP_FIELDS for f in fields) or len(set(fields)) != len(fields):
        raise SpatialTwinError(
            "invalid_usage_query",
            f"group is a comma-separated list of {', '.join(GROUP_FIELDS)}",
            {"group": str(value)[:200], "allowed": list(GROUP_FIELDS)},
            status=422,
        )
    return fields


def report_csv(report: dict[str, Any]) -> str:
    """The report's rows as CSV (a header line, then one line per row, then `total`)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    group = report["group"]
    writer.writerow([*group, "events", "count", "fee_eur"])
    for row in report["rows"]:
        writer.writerow(
            [
                *("" if row[g] is None else row[g] for g in group),
                row["events"],
                row["count"],
                f"{row['fee_eur']:.2f}",
            ]
        )
    totals = report["totals"]
    writer.writerow(
        [
            "total",
            *([""] * (len(group) - 1)),
            totals["events"],
            totals["count"],
            f"{totals['fee_eur']:.2f}",
        ]
    )
    return out.getvalue()
