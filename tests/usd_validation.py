"""USD validation from Python tests: what `usdchecker --arkit` checks, run through `pxr`.

usd-core 26 ships the validation framework (`pxr.UsdValidation`) but not the `usdchecker`
binary nor the Python `UsdUtils.ComplianceChecker` the old `--arkit` rules lived in. So:

1. **Every registered validator**, as `usdchecker --arkit --useNewValidationFramework` runs
   them (`pxr/usdValidation/bin/usdchecker/usdchecker.cpp`): all of
   `ValidationRegistry().GetOrLoadAllValidators()` — core, UsdGeom, UsdShade, UsdSkel, UsdLux,
   UsdMedia, UsdPhysics and the `UsdzValidators` (package encapsulation, file extensions, zip
   alignment and compression) — except `RootPackageValidator`, which usdchecker drops unless
   `--rootPackageOnly`. They run on the default variant selection and then on every variant
   of every variant set, selected in the session layer, as usdchecker does.
2. **The ARKit rules the framework has no validator for yet** (the rule checkers of the old
   `complianceChecker.py` whose names start with `ARKit`): the package's first file is its
   root layer and is `.usdc`; the package holds only `.usdc`, `.png`, `.jpg`/`.jpeg` files;
   every prim type is one ARKit knows; every shader is `UsdPreviewSurface`, `UsdUVTexture`,
   `UsdPrimvarReader_float2` or `UsdTransform2d`; every mesh with a material binding has
   `MaterialBindingAPI` applied; the stage is Y-up.

    from tests.usd_validation import assert_valid_usdz
    report = assert_valid_usdz(path)   # AssertionError listing every error; warnings returned
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass, field
from pathlib import Path

ARKIT_PRIM_TYPES = {
    "",
    "Scope",
    "Xform",
    "Camera",
    "Shader",
    "Material",
    "Mesh",
    "Sphere",
    "Cube",
    "Cylinder",
    "Cone",
    "Capsule",
    "GeomSubset",
    "Points",
    "SkelRoot",
    "Skeleton",
    "SkelAnimation",
    "BlendShape",
    "SpatialAudio",
}
ARKIT_SHADERS = {
    "UsdPreviewSurface",
    "UsdUVTexture",
    "UsdPrimvarReader_float2",
    "UsdTransform2d",
}
ARKIT_FILE_TYPES = (".usdc", ".png", ".jpg", ".jpeg")
SKIPPED_VALIDATORS = {"usdUtilsValidators:RootPackageValidator"}


@dataclass
class UsdReport:
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    validators: list[str] = field(default_factory=list)
    variants_checked: list[str] = field(default_factory=list)


def _framework(stage, report: UsdReport, where: str) -> None:
    from pxr import UsdValidation

    registry = UsdValidation.ValidationRegistry()
    validators = [
        v
        for v in registry.GetOrLoadAllValidators()
        if v.GetMetadata().name not in SKIPPED_VALIDATORS
    ]
    report.validators = sorted(v.GetMetadata().name for v in validators)
    for error in UsdValidation.ValidationContext(validators).Validate(stage):
        kind = error.GetType()
        text = f"{where}: {error.GetErrorAsString()}"
        if kind == UsdValidation.ValidationErrorType.Error:
            report.errors.append(text)
        elif kind == UsdValidation.ValidationErrorType.Warn:
            report.warnings.append(text)


def _arkit_rules(path: Path, stage, report: UsdReport) -> None:
    from pxr import Usd, UsdGeom, UsdShade

    with zipfile.ZipFile(path) as package:
        names = [i.filename for i in package.infolist()]
    if not names or not names[0].endswith(".usdc"):
        report.errors.append(f"ARKit: the package's first file must be a .usdc layer: {names}")
    for name in names:
        if not name.lower().endswith(ARKIT_FILE_TYPES):
            report.errors.append(f"ARKit: file type not allowed in the package: {name}")
    if UsdGeom.GetStageUpAxis(stage) != UsdGeom.Tokens.y:
        report.errors.append("ARKit: the stage must be Y-up")
    for prim in stage.Traverse(Usd.TraverseInstanceProxies()):
        if prim.GetTypeName() not in ARKIT_PRIM_TYPES:
            report.errors.append(f"ARKit: prim type {prim.GetTypeName()!r} at {prim.GetPath()}")
        if prim.IsA(UsdShade.Shader):
            shader_id = UsdShade.Shader(prim).GetShaderId()
            if shader_id not in ARKIT_SHADERS:
                report.errors.append(f"ARKit: shader {shader_id!r} at {prim.GetPath()}")
        if prim.GetRelationship("material:binding") and not prim.HasAPI(
            UsdShade.MaterialBindingAPI
        ):
            report.errors.append(f"ARKit: binding without MaterialBindingAPI at {prim.GetPath()}")


def validate_usdz(path: str | Path) -> UsdReport:
    """Open the package with `pxr.Usd` and run the checks above; every variant too."""
    from pxr import Usd

    path = Path(path)
    report = UsdReport()
    stage = Usd.Stage.Open(str(path))
    if stage is None:
        report.errors.append(f"pxr could not open {path}")
        return report
    _framework(stage, report, "default variants")
    _arkit_rules(path, stage, report)
    with Usd.EditContext(stage, stage.GetSessionLayer()):
        for prim in list(stage.Traverse()):
            for set_name in prim.GetVariantSets().GetNames():
                variant_set = prim.GetVariantSets().GetVariantSet(set_name)
                for variant in variant_set.GetVariantNames():
                    variant_set.SetVariantSelection(variant)
                    where = f"{prim.GetPath()}{{{set_name}={variant}}}"
                    report.variants_checked.append(where)
                    _framework(stage, report, where)
                    _arkit_rules(path, stage, report)
                variant_set.ClearVariantSelection()
    return report


def assert_valid_usdz(path: str | Path) -> UsdReport:
    report = validate_usdz(path)
    assert not report.errors, "USDZ validation errors:\n" + "\n".join(report.errors)
    return report
