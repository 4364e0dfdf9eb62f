"""Which garment of a look is worn over which: the draping order, inner layer first.

By category, the way people dress: bottoms (trousers, skirts) first, then dresses and
outfits, then tops, then outerwear; garments of one rank keep the order they were given in.
A request may instead ask for its own order (`"as_given"`): a top tucked into a skirt is the
skirt worn over the top.

Example:
    draping_order(["tshirt", "skirt"], ["top", "skirt"])  # -> [1, 0]: the skirt first
"""

from __future__ import annotations

from collections.abc import Sequence

from spatialtwin.errors import SpatialTwinError

LAYER_ORDERS = ("category", "as_given")
# Rank of each garment category, lowest drapes first (inside). An unknown or missing category
# ranks with tops: between what is worn under a top and what is worn over it.
LAYER_RANK: dict[str, int] = {
    "trousers": 0,
    "skirt": 0,
    "dress": 1,
    "outfit": 1,
    "top": 2,
    "outerwear": 3,
}
UNKNOWN_RANK = LAYER_RANK["top"]


def check_layer_order(order: object) -> str:
    """`order` if it names a known layer order; raises `SpatialTwinError` (422) otherwise."""
    if order not in LAYER_ORDERS:
        raise SpatialTwinError(
            "invalid_layer_order",
            f"layer_order must be one of {', '.join(LAYER_ORDERS)}",
            {"layer_order": order, "allowed": list(LAYER_ORDERS)},
            status=422,
        )
    return str(order)


def draping_order(categories: Sequence[str | None], order: str = "category") -> list[int]:
    """Indices of the garments in the order they are draped, inner first."""
    check_layer_order(order)
    indices = list(range(len(categories)))
    if order == "as_given":
        return indices
    return sorted(indices, key=lambda i: LAYER_RANK.get(categories[i] or "", UNKNOWN_RANK))
