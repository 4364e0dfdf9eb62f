"""Live garments as one NPZ blob, so that any server of a fleet can start a session's cloth
without draping and building it again.

Making a look live costs seconds of CPU (the bind-pose drape, the cloth levels, the settling:
3-6 s for the test skirt on two shared cores), which is too slow for a mirror that must resume
on another server within 2 s after its server died. The server that builds a look's live
garments first stores them here, keyed by their content key (`mirror_service.live_garments`);
another server reads them back bit-exactly in tens of milliseconds.

Layout: every array of every garment under a dotted name (`g0.drape_positions_m`,
`g0.l1.model.edges`, `g0.l1.on_display.triangle`, …) and a `manifest` entry holding the
UTF-8 JSON of everything else (format, content key, fabric, scalars, which optional parts
exist). Arrays keep their dtypes. `ClothModel` is written field by field from its dataclass
fields, so a field added to it later is carried without a change here; a field of a type this
codec cannot carry makes `live_build_to_npz` raise `TypeError` (the caller then stores
nothing and every server builds for itself, as without a fleet).

Reading checks what it can before it trusts the bytes: the manifest's format and content key
(a blob of another build is refused), every named array present, shapes consistent with the
vertex counts; anything else is `SpatialTwinError("stored_build_invalid")`, after which the
caller builds the garments itself.
"""

from __future__ import annotations

import dataclasses
import json
import zipfile
import zlib
from typing import Any

import numpy as np
from numpy.typing import NDArray

from spatialtwin.body.skinning import SkinWeights
from spatialtwin.cloth.fabric import Fabric
from spatialtwin.cloth.model import ClothModel
from spatialtwin.errors import SpatialTwinError
from spatialtwin.gltf.garment_io import arrays_from_npz, arrays_to_npz
from spatialtwin.live.garments import Binding, ClothLevel, LiveGarment

FORMAT = 1
_BINDING_ARRAYS = ("faces", "triangle", "barycentric", "offset_local_m")


def _invalid(message: str, detail: Any = None) -> SpatialTwinError:
    return SpatialTwinError("stored_build_invalid", message, detail)


def _put_binding(
    arrays: dict[str, NDArray[Any]], prefix: str, binding: Binding | None
) -> dict[str, int] | None:
    if binding is None:
        return None
    for name in _BINDING_ARRAYS:
        arrays[f"{prefix}.{name}"] = getattr(binding, name)
    return {"vertex_count": int(binding.vertex_count)}


def _put_model(arrays: dict[str, NDArray[Any]], prefix: str, model: ClothModel) -> dict[str, Any]:
    """The model's arrays into `arrays`; returns its other fields as JSON."""
    scalars: dict[str, Any] = {}
    for f in dataclasses.fields(model):
        value = getattr(model, f.name)
        if isinstance(value, np.ndarray):
            arrays[f"{prefix}.{f.name}"] = value
        elif isinstance(value, Fabric):
            scalars[f.name] = {"fabric": value.to_json()}
        elif isinstance(value, bool | int | float | str):
            scalars[f.name] = value
        else:
            raise TypeError(f"ClothModel.{f.name} ({type(value).__name__}) cannot be stored")
    return scalars


def live_build_to_npz(key: str, lives: tuple[LiveGarment, ...]) -> bytes:
    """The live garments of one build (content key `key`) as NPZ bytes."""
    arrays: dict[str, NDArray[Any]] = {}
    garments = []
    for i, live in enumerate(lives):
        g = f"g{i}"
        arrays[f"{g}.drape_positions_m"] = live.drape_positions_m
        arrays[f"{g}.display_faces"] = live.display_faces
        if live.display_corner_uvs is not None:
            arrays[f"{g}.display_corner_uvs"] = live.display_corner_uvs
        arrays[f"{g}.skin_joints"] = live.skin.joints
        arrays[f"{g}.skin_weights"] = live.skin.weights
        levels = []
        for j, level in enumerate(live.levels):
            lv = f"{g}.l{j}"
            levels.append(
                {
                    "index": int(level.index),
                    "edge_m": float(level.edge_m),
                    "model": _put_model(arrays, f"{lv}.model", level.model),
                    "on_display": _put_binding(arrays, f"{lv}.on_display", level.on_display),
                    "display_on_level": _put_binding(
                        arrays, f"{lv}.display_on_level", level.display_on_level
                    ),
                }
            )
        garments.append(
            {
                "key": live.key,
                "stream": int(live.stream),
                "fabric": live.fabric.to_json(),
                "base_color": [float(c) for c in live.base_color],
                "meta": live.meta,
                "uvs": live.display_corner_uvs is not None,
                "levels": levels,
            }
        )
    manifest = {"format": FORMAT, "key": key, "garments": garments}
    # a meta value JSON cannot hold is a TypeError here, as the module doc says
    text = json.dumps(manifest, allow_nan=False, sort_keys=True)
    arrays["manifest"] = np.frombuffer(text.encode("utf-8"), dtype=np.uint8)
    return arrays_to_npz(arrays)


def _array(arrays: dict[str, NDArray[Any]], name: str) -> NDArray[Any]:
    value = arrays.get(name)
    if value is None:
        raise _invalid("a stored live build lacks an array", {"array": name})
    return value


def _binding(
    arrays: dict[str, NDArray[Any]], prefix: str, meta: dict[str, Any] | None
) -> Binding | None:
    if meta is None:
        return None
    parts = {name: _array(arrays, f"{prefix}.{name}") for name in _BINDING_ARRAYS}
    return Binding(vertex_count=int(meta["vertex_count"]), **parts)


def _model(arrays: dict[str, NDArray[Any]], prefix: str, scalars: dict[str, Any]) -> ClothModel:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(ClothModel):
        if f.name in scalars:
            value = scalars[f.name]
            values[f.name] = Fabric.from_json(value["fabric"]) if isinstance(value, dict) else value
        elif f"{prefix}.{f.name}" in arrays:
            values[f.name] = arrays[f"{prefix}.{f.name}"]
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise _invalid("a stored cloth model lacks a field", {"field": f.name})
    return ClothModel(**values)


def live_build_from_npz(data: bytes, key: str) -> tuple[LiveGarment, ...]:
    """The live garments `live_build_to_npz` wrote for content key `key`."""
    try:
        arrays = arrays_from_npz(data)
        manifest = json.loads(bytes(_array(arrays, "manifest")).decode("utf-8"))
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise _invalid("a stored live build is not readable", str(exc)[:200]) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise _invalid("a stored live build of another format", {"format": FORMAT})
    if manifest.get("key") != key:
        raise _invalid("a stored live build of another content", {"key": key})
    lives = []
    try:
        for i, g in enumerate(manifest["garments"]):
            p = f"g{i}"
            drape = _array(arrays, f"{p}.drape_positions_m")
            levels = tuple(
                ClothLevel(
                    index=int(level["index"]),
                    model=_model(arrays, f"{p}.l{j}.model", level["model"]),
                    edge_m=float(level["edge_m"]),
                    on_display=_binding(arrays, f"{p}.l{j}.on_display", level["on_display"]),
                    display_on_level=_binding(
                        arrays, f"{p}.l{j}.display_on_level", level["display_on_level"]
                    ),
                )
                for j, level in enumerate(g["levels"])
            )
            if not levels or levels[0].model.vertex_count != len(drape):
                raise _invalid("a stored live build's level 0 is not its display mesh")
            lives.append(
                LiveGarment(
                    key=str(g["key"]),
                    stream=int(g["stream"]),
                    fabric=Fabric.from_json(g["fabric"]),
                    levels=levels,
                    drape_positions_m=drape,
                    display_faces=_array(arrays, f"{p}.display_faces"),
                    display_corner_uvs=_array(arrays, f"{p}.display_corner_uvs")
                    if g["uvs"]
                    else None,
                    base_color=tuple(float(c) for c in g["base_color"]),  # type: ignore[arg-type]
                    skin=SkinWeights(
                        _array(arrays, f"{p}.skin_joints"), _array(arrays, f"{p}.skin_weights")
                    ),
                    meta=dict(g["meta"]),
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise _invalid("a stored live build is malformed", str(exc)[:200]) from exc
    return tuple(lives)
