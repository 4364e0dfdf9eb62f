"""HTTP routes for shops: a product (a garment's size run on licensed twins) by its sku.

`GET /api/v1/products/{sku}?channel=ecommerce|ar[&twin=<id>…][&size=<label>…]` answers the
sizes, the twins usable in the channel (height, measurements, credit, disclosure,
provenance) and, per selected twin × size, the look with its level manifest, AR files and
poster (`services.products`). A look not built yet is built once by a `product.look` job:
its entry is `"status": "building"` with the job, and the whole answer is **202** with
`Retry-After` until every selected look is `ready` (then **200**). A bad sku (length,
characters) is 400 `invalid_sku`, an unknown one 404 `product_not_found`, a channel other than
`ecommerce`/`ar` 400 `invalid_channel`. `?looks=none` lists sizes and twins only. See
docs/shop-api.md.
"""

from __future__ import annotations

from aiohttp import web

from spatialtwin.server.loading import ready_services

routes = web.RouteTableDef()


@routes.get("/api/v1/products/{sku:.+}")
async def get_product(request: web.Request) -> web.Response:
    products = (await ready_services(request)).products
    answer = await products.product(
        request.match_info["sku"],
        request.query.get("channel", "ecommerce"),
        request.query.getall("twin", []),
        request.query.getall("size", []),
        list_looks=request.query.get("looks", "all") != "none",
    )
    if not answer.building:
        return web.json_response(answer.body, headers={"Cache-Control": "private, no-cache"})
    return web.json_response(
        answer.body,
        status=202,
        headers={"Retry-After": str(answer.retry_after_s), "Cache-Control": "no-store"},
    )
