"""Khronos glTF-Validator from Python tests.

Every GLB the project writes (twin bodies, draped garments, LOD levels) must pass the reference
validator with zero errors; warnings are allowed but handed back so a test can assert on them.
The validator is the npm `gltf-validator` package run by `tests/tools/validate_gltf.mjs`. Node
and the Dart-compiled validator take ~0.3 s to start, so `validate_glbs` sends a whole batch
through one node process.

    from tests.gltf_validation import assert_valid_glb, validate_glbs

    report = assert_valid_glb(glb_bytes)          # AssertionError listing every error
    reports = validate_glbs([path_a, bytes_b])    # one report per input, same order
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
VALIDATOR_SCRIPT = REPO_ROOT / "tests" / "tools" / "validate_gltf.mjs"
VALIDATOR_PACKAGE = REPO_ROOT / "node_modules" / "gltf-validator"

SEVERITY_NAMES = {0: "error", 1: "warning", 2: "info", 3: "hint"}

GlbInput = str | os.PathLike[str] | bytes | bytearray | memoryview


def _node_executable() -> str:
    node = shutil.which("node")
    if node is None:
        raise RuntimeError("glTF validation needs `node` on PATH (Debian package nodejs)")
    if not VALIDATOR_PACKAGE.is_dir():
        raise RuntimeError(
            f"glTF validation needs the npm package gltf-validator in {VALIDATOR_PACKAGE.parent}; "
            "run `npm ci` in the repository root"
        )
    return node


def validate_glbs(
    inputs: Sequence[GlbInput], *, max_issues: int = 200, timeout_s: float = 120.0
) -> list[dict[str, Any]]:
    """Validate several GLB/glTF files or byte strings in one node process.

    Returns one report per input, in order: `numErrors`, `numWarnings`, `numInfos`,
    `numHints`, `truncated`, `messages` (each with `code`, `message`, `severity` 0–3 and a
    JSON `pointer` or byte `offset`) and the validator's `info` summary (vertex and triangle
    counts, skins, resources). Byte inputs are written to a temporary directory first, since
    the validator reads files; `path` in their report is that temporary name.
    """
    if len(inputs) == 0:
        return []
    node = _node_executable()
    with tempfile.TemporaryDirectory(prefix="gltf-validate-") as tmp:
        paths: list[str] = []
        for i, item in enumerate(inputs):
            if isinstance(item, bytes | bytearray | memoryview):
                path = Path(tmp) / f"input-{i}.glb"
                path.write_bytes(bytes(item))
                paths.append(str(path))
            else:
                paths.append(os.fspath(item))
        completed = subprocess.run(
            [node, str(VALIDATOR_SCRIPT), "--max-issues", str(max_issues), *paths],
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
            cwd=REPO_ROOT,
        )
    if completed.returncode not in (0, 1):
        raise RuntimeError(
            f"validate_gltf.mjs exited with {completed.returncode}: {completed.stderr.strip()}"
        )
    reports = [json.loads(line) for line in completed.stdout.splitlines() if line.strip()]
    if len(reports) != len(paths):
        raise RuntimeError(
            f"validate_gltf.mjs returned {len(reports)} reports for {len(paths)} inputs: "
            f"{completed.stderr.strip()}"
        )
    return reports


def validate_glb(glb: GlbInput, *, max_issues: int = 200) -> dict[str, Any]:
    """Validate one GLB/glTF file or byte string; see `validate_glbs` for the report."""
    return validate_glbs([glb], max_issues=max_issues)[0]


def messages_with_severity(report: dict[str, Any], severity: int) -> list[dict[str, Any]]:
    return [m for m in report["messages"] if m.get("severity") == severity]


def format_messages(messages: Sequence[dict[str, Any]]) -> str:
    lines = []
    for m in messages:
        where = m.get("pointer") or (f"byte {m['offset']}" if "offset" in m else "")
        severity = SEVERITY_NAMES.get(m.get("severity", 0), "?")
        lines.append(f"  {severity} {m['code']} at {where or '-'}: {m['message']}")
    return "\n".join(lines)


def assert_valid_glbs(inputs: Sequence[GlbInput]) -> list[dict[str, Any]]:
    """Validate a batch and fail listing every error of every input with errors."""
    reports = validate_glbs(inputs)
    failures = []
    for item, report in zip(inputs, reports, strict=True):
        if report["numErrors"] > 0:
            name = (
                report["path"]
                if not isinstance(item, bytes | bytearray | memoryview)
                else (f"<{len(item)} bytes>")
            )
            failures.append(
                f"{name}: {report['numErrors']} glTF validation error(s)\n"
                + format_messages(messages_with_severity(report, 0))
            )
    if failures:
        raise AssertionError("\n".join(failures))
    return reports


def assert_valid_glb(glb: GlbInput) -> dict[str, Any]:
    """Fail with every validator error listed; return the report (warnings are allowed)."""
    return assert_valid_glbs([glb])[0]
