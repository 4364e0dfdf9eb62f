"""Fuzzing the parsers of outside input: structure-aware strategies over real files, and the
one property every parser must keep.

The property (`exercise`): on any input a parser returns a result its caller can use, or
raises the project's error (`SpatialTwinError` with a snake_case `code` and a 4xx status). It
never raises another exception, never runs longer than `TIME_LIMIT_S` of CPU time on one input
(an interval timer interrupts it), and never allocates more than `alloc_budget_bytes(input)`
(tracemalloc's peak over the call, numpy's buffers included: a 100-byte input may not make
1 GB).

The inputs start from real third-party files in ../shared/data (CesiumMan.glb, MakeHuman's
OBJ/.mhclo/BVH, the tfjs pose videos' landmarks, a real photo), or files the project's own
writers make from them (a meshopt level, a PLY, a zip), and are mutated the way broken
exporters and attackers do: byte flips, interesting integers written over header fields,
truncation, deletion, duplication, splicing of two files; for glTF, field-level edits of the
JSON chunk (counts, offsets, types, huge sizes, NaN/Infinity, deep nesting, new keys); for the
binary protocols, every header field drawn from its valid values and its edges.

Budgets: the `ci` profile (default; `make test`) runs few examples, derandomised so the suite
is repeatable; `SPATIALTWIN_FUZZ_PROFILE=fuzz` (`make fuzz`) runs many, random, with a
database under tests/_out/ so a failure found once is replayed first next time. Every
exercised input is counted per parser and outcome, and the counts are printed at the end of
the run (and written to tests/_out/fuzz_counts.json).
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import re
import signal
import struct
import sys
import time
import tracemalloc
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.database import DirectoryBasedExampleDatabase

from spatialtwin.errors import SpatialTwinError

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "tests" / "_out"

PROFILE = os.environ.get("SPATIALTWIN_FUZZ_PROFILE", "ci")
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)
settings.register_profile(
    "fuzz",
    max_examples=int(os.environ.get("SPATIALTWIN_FUZZ_EXAMPLES", "3000")),
    deadline=None,
    database=DirectoryBasedExampleDatabase(str(OUT / "hypothesis")),
    suppress_health_check=list(HealthCheck),
    print_blob=True,
)

# One input's CPU time; a parser past it is hung (generous: two shared cores, tracemalloc on).
TIME_LIMIT_S = float(os.environ.get("SPATIALTWIN_FUZZ_TIME_LIMIT_S", "10"))
ALLOC_FIXED_BYTES = 128 * 1024 * 1024
ALLOC_PER_INPUT_BYTE = 256
CODE = re.compile(r"^[a-z][a-z0-9_]*$")


def fuzz_settings(scale: float = 1.0) -> settings:
    """The active profile, its example count scaled (expensive parsers run fewer)."""
    base = settings.get_profile(PROFILE)
    return settings(base, max_examples=max(5, round(base.max_examples * scale)))


def alloc_budget_bytes(input_bytes: int) -> int:
    """The most one parse may allocate at its peak: a fixed allowance plus a bounded
    expansion of the input (float64 arrays of float32 data, trimesh's copies)."""
    return ALLOC_FIXED_BYTES + ALLOC_PER_INPUT_BYTE * input_bytes


# ---------------------------------------------------------------- the property


class ParserHang(BaseException):
    """Raised in the parser by the interval timer. A BaseException, so a parser's own
    `except Exception` cannot swallow it into a 4xx."""


def _on_timer(signum: int, frame: Any) -> None:
    raise ParserHang


STATS: dict[str, Counter[str]] = defaultdict(Counter)


def exercise(
    parser: str,
    call: Callable[[], T],
    input_bytes: int,
    check: Callable[[T], None] | None = None,
) -> T | SpatialTwinError:
    """Run one parse under the time and memory limits; the result (checked by `check`) or
    the project error it raised. Any other outcome fails the example."""
    STATS[parser]["examples"] += 1
    budget = alloc_budget_bytes(input_bytes)
    previous = signal.signal(signal.SIGPROF, _on_timer)
    tracemalloc.start(1)
    started = time.process_time()
    try:
        signal.setitimer(signal.ITIMER_PROF, TIME_LIMIT_S)
        try:
            result: T | SpatialTwinError = call()
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
    except ParserHang:
        STATS[parser]["failures"] += 1
        pytest.fail(f"{parser}: no answer within {TIME_LIMIT_S} s of CPU ({input_bytes} bytes)")
    except SpatialTwinError as exc:
        result = exc
    except Exception as exc:
        STATS[parser]["failures"] += 1
        raise AssertionError(
            f"{parser} raised {type(exc).__name__} (not a SpatialTwinError) on "
            f"{input_bytes} bytes: {exc}"
        ) from exc
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        signal.signal(signal.SIGPROF, previous)
    elapsed = time.process_time() - started
    STATS[parser]["_max_cpu_ms"] = max(STATS[parser]["_max_cpu_ms"], round(elapsed * 1000))
    STATS[parser]["_max_peak_kib"] = max(STATS[parser]["_max_peak_kib"], peak // 1024)
    if peak > budget:
        STATS[parser]["failures"] += 1
    assert peak <= budget, (
        f"{parser} allocated {peak} bytes at its peak from {input_bytes} input bytes "
        f"(budget {budget})"
    )
    if isinstance(result, SpatialTwinError):
        assert CODE.match(str(result.code)), f"{parser}: error code {result.code!r}"
        assert 400 <= result.status < 500, f"{parser}: {result.code} has status {result.status}"
        assert result.message, f"{parser}: {result.code} without a message"
        json.dumps(result.to_json(), allow_nan=False)  # the error body is sendable as JSON
        STATS[parser][f"refused:{result.code}"] += 1
        return result
    if check is not None:
        try:
            check(result)
        except AssertionError:
            STATS[parser]["failures"] += 1  # a result its caller could not use
            raise
    STATS[parser]["accepted"] += 1
    return result


def summary_lines() -> list[str]:
    """The per-parser counts of this process: inputs, accepted, refusals by code, the
    slowest CPU time and the highest allocation peak of one input."""
    lines = []
    total = 0
    for parser in sorted(STATS):
        counts = STATS[parser]
        total += counts["examples"]
        refused = {k[8:]: v for k, v in counts.items() if k.startswith("refused:")}
        top = ", ".join(f"{k} {v}" for k, v in sorted(refused.items(), key=lambda kv: -kv[1]))
        lines.append(
            f"{parser}: {counts['examples']} inputs, {counts['accepted']} accepted, "
            f"{sum(refused.values())} refused ({top or '-'}); max {counts['_max_cpu_ms']} ms "
            f"CPU, peak {counts['_max_peak_kib']} KiB"
        )
        answers = {k: v for k, v in counts.items() if k.startswith("http ")}
        if answers:
            lines.append("    answered: " + ", ".join(f"{k} x{v}" for k, v in answers.items()))
    failures = sum(c["failures"] for c in STATS.values())
    lines.append(f"total: {total} inputs, {failures} failing (crash, hang or memory)")
    return lines


class _Summary:
    """Prints the per-parser counts at the end of the run and keeps them in
    tests/_out/fuzz_counts*.json. A pytest-xdist worker has no terminal of its own: it
    writes its counts to the stderr it inherited, once its capture has ended."""

    def pytest_terminal_summary(self, terminalreporter: Any, config: pytest.Config) -> None:
        if STATS and not hasattr(config, "workerinput"):
            terminalreporter.section(f"fuzzed parsers (profile {PROFILE})")
            for line in summary_lines():
                terminalreporter.write_line(line)
            self._save("fuzz_counts.json")

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        worker = getattr(config, "workerinput", {}).get("workerid")
        if STATS and worker:
            title = f" fuzzed parsers, xdist worker {worker} (profile {PROFILE}) "
            text = "\n".join([title.center(78, "="), *summary_lines()]) + "\n"
            sys.__stderr__.write(text)
            sys.__stderr__.flush()
            self._save(f"fuzz_counts.{worker}.json")

    @staticmethod
    def _save(name: str) -> None:
        OUT.mkdir(parents=True, exist_ok=True)
        (OUT / name).write_text(
            json.dumps({"profile": PROFILE, "parsers": STATS}, indent=1, sort_keys=True)
        )


@pytest.fixture(autouse=True, scope="session")
def fuzz_summary(request: pytest.FixtureRequest) -> None:
    """Registers the summary printer once per run (test modules import this fixture)."""
    manager = request.config.pluginmanager
    if not manager.has_plugin("spatialtwin-fuzz-summary"):
        manager.register(_Summary(), "spatialtwin-fuzz-summary")


class FuzzInput:
    """An input as hypothesis reports it: its size and hash, never its bytes (a GLB is
    megabytes of repr); a reported input is saved under tests/_out/fuzz_inputs/ to replay."""

    def __init__(self, data: bytes, name: str = "input") -> None:
        self.data = data
        self.name = name

    def __len__(self) -> int:
        return len(self.data)

    def __repr__(self) -> str:
        digest = hashlib.sha256(self.data).hexdigest()[:16]
        path = OUT / "fuzz_inputs" / f"{digest}-{self.name}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self.data)
        return f"FuzzInput({len(self.data)} bytes {self.name!r}, saved as {path.relative_to(REPO)})"


def as_input(
    make: Callable[[], st.SearchStrategy[bytes]], name: str
) -> st.SearchStrategy[FuzzInput]:
    """`make()`'s bytes as `FuzzInput`s; deferred, so seed files are read when a test runs
    (a missing ../shared/data skips that test, not the whole collection)."""
    return st.deferred(lambda: make().map(lambda data: FuzzInput(data, name)))


# ---------------------------------------------------------------- byte-level mutation

INTERESTING_8 = (0, 1, 0x7F, 0x80, 0xFF)
INTERESTING_32 = (
    0,
    1,
    2,
    3,
    4,
    0x7F,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x10000,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFE,
    0xFFFFFFFF,
)


def _position(size: int, hot: int) -> st.SearchStrategy[int]:
    """A byte position, often inside the first `hot` bytes (headers, JSON chunks)."""
    if size <= 0:
        return st.just(0)
    return st.one_of(st.integers(0, min(hot, size) - 1), st.integers(0, size - 1))


@st.composite
def mutated_bytes(draw: st.DrawFn, seeds: list[bytes], hot: int = 4096, max_ops: int = 4) -> bytes:
    """One of `seeds` with 1..`max_ops` mutations: flips, interesting bytes and 32-bit words,
    truncation, deletion, duplication, random insertion, splicing with another seed."""
    data = bytearray(draw(st.sampled_from(seeds)))
    for _ in range(draw(st.integers(1, max_ops))):
        op = draw(
            st.sampled_from(
                ("flip", "byte", "word", "truncate", "delete", "duplicate", "insert", "splice")
            )
        )
        n = len(data)
        if n == 0:
            data += draw(st.binary(min_size=1, max_size=16))
            continue
        at = draw(_position(n, hot))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[at] = draw(st.sampled_from(INTERESTING_8))
        elif op == "word" and at + 4 <= n:
            word = draw(st.sampled_from(INTERESTING_32))
            data[at : at + 4] = struct.pack("<I" if draw(st.booleans()) else ">I", word)
        elif op == "truncate":
            del data[at:]
        elif op == "delete":
            del data[at : at + draw(st.integers(1, 64))]
        elif op == "duplicate":
            length = draw(st.integers(1, 256))
            data[at:at] = data[at : at + length]
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=32))
        elif op == "splice":
            other = draw(st.sampled_from(seeds))
            cut = draw(_position(len(other), hot)) if other else 0
            data = data[:at] + bytearray(other[cut:])
    return bytes(data)


def write_field(data: bytes, offset: int, fmt: str, value: Any) -> bytes:
    """`data` with one struct field overwritten (no bounds growth: past the end is ignored)."""
    size = struct.calcsize(fmt)
    if offset + size > len(data):
        return data
    return data[:offset] + struct.pack(fmt, value) + data[offset + size :]


# ---------------------------------------------------------------- text-level mutation

HOSTILE_NUMBER_TOKENS = (
    "nan",
    "NaN",
    "inf",
    "-inf",
    "1e999",
    "-1e999",
    "0",
    "-0",
    "1e-320",
    "99999999999999999999",
    "-1",
    "2147483648",
    "4294967296",
    "0x10",
    "1,5",
    "",
    "+",
    "-",
    ".",
    "e5",
    "1e",
    "١٢",
)


@st.composite
def mutated_lines(draw: st.DrawFn, seeds: list[bytes], max_ops: int = 4) -> bytes:
    """A line-oriented text file (OBJ, MTL, PLY header, BVH, .mhclo) mutated at its own
    structure: lines dropped, duplicated or swapped, a token replaced by a hostile number or
    word, a line cut short, then sometimes a byte-level mutation on top."""
    lines = draw(st.sampled_from(seeds)).split(b"\n")
    for _ in range(draw(st.integers(1, max_ops))):
        if not lines:
            lines = [b""]
        i = draw(st.integers(0, len(lines) - 1))
        op = draw(st.sampled_from(("token", "token", "drop", "dup", "swap", "cut", "keyword")))
        if op == "token":
            tokens = lines[i].split(b" ")
            k = draw(st.integers(0, len(tokens) - 1))
            tokens[k] = draw(
                st.one_of(
                    st.sampled_from(HOSTILE_NUMBER_TOKENS).map(str.encode),
                    st.integers(-(2**40), 2**40).map(lambda v: str(v).encode()),
                    st.text(max_size=6).map(lambda s: s.encode("utf-8", "surrogatepass")),
                )
            )
            lines[i] = b" ".join(tokens)
        elif op == "drop":
            del lines[i]
        elif op == "dup":
            lines[i:i] = [lines[i]] * draw(st.integers(1, 3))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "cut":
            lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
        else:
            word = draw(st.sampled_from(KEYWORDS))
            lines.insert(i, word + b" " + b" ".join(lines[i].split(b" ")[1:]))
    data = b"\n".join(lines)
    if draw(st.integers(0, 3)) == 0:
        data = draw(mutated_bytes([data], max_ops=2))
    return data


KEYWORDS = (
    b"v",
    b"vt",
    b"vn",
    b"f",
    b"g",
    b"o",
    b"usemtl",
    b"mtllib",
    b"verts",
    b"delete_verts",
    b"x_scale",
    b"ROOT",
    b"JOINT",
    b"End",
    b"{",
    b"}",
    b"OFFSET",
    b"CHANNELS",
    b"MOTION",
    b"Frames:",
    b"element",
    b"property",
    b"end_header",
    b"format",
    b"newmtl",
    b"map_Kd",
    b"Kd",
    b"d",
    b"norm",
)


# ---------------------------------------------------------------- JSON-level mutation

NAN, POS_INF, NEG_INF = float("nan"), float("inf"), float("-inf")
DEEP = "\0deep\0"  # replaced after serialising by a nesting no recursive serialiser could write


def hostile_values() -> st.SearchStrategy[Any]:
    """JSON values that break careless readers: edges of every integer width, huge sizes,
    negative and fractional counts, NaN/Infinity, wrong types, deep nesting."""
    return st.one_of(
        st.sampled_from(
            [
                0,
                1,
                -1,
                2,
                3,
                4,
                5,
                6,
                255,
                256,
                5120,
                5121,
                5122,
                5123,
                5125,
                5126,
                2**31 - 1,
                2**31,
                2**32 - 1,
                2**32,
                2**53 + 1,
                2**63,
                10**30,
                -(2**31),
                1.5,
                0.5,
                -0.0,
                1e308,
                NAN,
                POS_INF,
                NEG_INF,
                True,
                False,
                None,
                "",
                "SCALAR",
                "VEC3",
                "MAT4",
                "VEC5",
                "data:application/octet-stream;base64,AAAA",
                "../../etc/passwd",
                [],
                {},
                [0],
                [NAN, 0, 0],
                [1e308, 1e308, 1e308],
                {"x": 1},
                DEEP,
            ]
        ),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        st.text(max_size=8),
        st.lists(st.integers(-4, 70000), max_size=6),
    )


def json_paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path (keys and indices) into a JSON value, containers included."""
    paths = [prefix]
    if isinstance(value, dict):
        for k, v in value.items():
            paths += json_paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value[:64]):  # long arrays: their first elements stand for all
            paths += json_paths(v, (*prefix, i))
    return paths


def _get(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated_json(
    draw: st.DrawFn,
    doc: Any,
    paths: list[tuple[Any, ...]],
    vocabulary: tuple[str, ...] = (),
    max_ops: int = 4,
    min_ops: int = 1,
) -> Any:
    """`doc` (not changed) with 1..`max_ops` field-level edits: a value replaced by a hostile
    one, a key deleted, a key from `vocabulary` added, a list item duplicated or dropped."""
    out = copy.deepcopy(doc)
    for _ in range(draw(st.integers(min_ops, max_ops))):
        path = draw(st.sampled_from(paths))
        try:
            parent = _get(out, path[:-1]) if path else None
        except (KeyError, IndexError, TypeError):
            continue  # an earlier edit removed it
        op = draw(st.sampled_from(("replace", "replace", "replace", "delete", "add", "dup")))
        if not path:
            if op == "replace":
                out = draw(hostile_values())
            continue
        key = path[-1]
        if not isinstance(parent, dict | list):
            continue
        if isinstance(parent, list) and not (isinstance(key, int) and key < len(parent)):
            continue
        if isinstance(parent, dict) and key not in parent:
            continue
        if op == "replace":
            parent[key] = draw(hostile_values())
        elif op == "delete":
            del parent[key]
        elif op == "add" and vocabulary:
            target = parent[key]
            if isinstance(target, dict):
                target[draw(st.sampled_from(vocabulary))] = draw(hostile_values())
            elif isinstance(target, list):
                target.append(draw(hostile_values()))
        elif op == "dup" and isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
    return out


def dump_hostile_json(value: Any, deep_levels: int = 100_000) -> bytes:
    """JSON text with NaN/Infinity as the tokens Python writes and `DEEP` as `deep_levels`
    nested arrays (what a recursive reader cannot parse)."""
    text = json.dumps(value, allow_nan=True)
    return text.replace(json.dumps(DEEP), "[" * deep_levels + "]" * deep_levels).encode()


# ---------------------------------------------------------------- glTF containers


def split_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON and BIN chunks of a well-formed GLB."""
    (json_len,) = struct.unpack_from("<I", data, 12)
    doc = json.loads(data[20 : 20 + json_len])
    rest = data[20 + json_len :]
    binary = rest[8 : 8 + struct.unpack_from("<I", rest, 0)[0]] if len(rest) >= 8 else b""
    return doc, binary


def pack_glb(json_bytes: bytes, binary: bytes | None) -> bytes:
    """A GLB container framing `json_bytes` and `binary` with lengths that agree."""
    text = json_bytes + b" " * (-len(json_bytes) % 4)
    out = struct.pack("<I4s", len(text), b"JSON") + text
    if binary is not None:
        body = binary + b"\0" * (-len(binary) % 4)
        out += struct.pack("<I4s", len(body), b"BIN\0") + body
    return struct.pack("<4sII", b"glTF", 2, 12 + len(out)) + out


GLTF_VOCABULARY = (
    "count",
    "byteOffset",
    "byteLength",
    "byteStride",
    "componentType",
    "type",
    "bufferView",
    "buffer",
    "normalized",
    "sparse",
    "indices",
    "material",
    "mode",
    "children",
    "mesh",
    "skin",
    "joints",
    "inverseBindMatrices",
    "matrix",
    "rotation",
    "scale",
    "translation",
    "extensions",
    "extensionsRequired",
    "scene",
    "nodes",
    "uri",
    "source",
    "mimeType",
    "POSITION",
    "NORMAL",
    "TEXCOORD_0",
    "JOINTS_0",
    "WEIGHTS_0",
    "_STRAIN",
    "EXT_meshopt_compression",
    "KHR_texture_transform",
    "baseColorTexture",
    "index",
    "filter",
)


# ---------------------------------------------------------------- seeds cut from real files


def obj_slice(data: bytes, faces_per_group: int = 120, header: bytes = b"") -> bytes:
    """A small OBJ cut from a real one: the first `faces_per_group` faces of each group, the
    vertices and texture vertices they use renumbered in order of first use (so every index
    is valid), group lines kept, `header` (mtllib/usemtl lines) in front."""
    positions = [ln for ln in data.splitlines() if ln.startswith(b"v ")]
    texcoords = [ln for ln in data.splitlines() if ln.startswith(b"vt ")]
    v_new: dict[int, int] = {}
    t_new: dict[int, int] = {}
    body: list[bytes] = []
    taken = 0
    for line in data.splitlines():
        if line.startswith((b"g ", b"o ", b"usemtl ")):
            body.append(line)
            taken = 0
        elif line.startswith(b"f ") and taken < faces_per_group:
            taken += 1
            corners = []
            for token in line.split()[1:]:
                parts = token.split(b"/")
                v = v_new.setdefault(int(parts[0]), len(v_new) + 1)
                if len(parts) > 1 and parts[1]:
                    t = t_new.setdefault(int(parts[1]), len(t_new) + 1)
                    corners.append(b"%d/%d" % (v, t))
                else:
                    corners.append(b"%d" % v)
            body.append(b"f " + b" ".join(corners))
    out = [header.rstrip(b"\n")] if header else []
    out += [positions[i - 1] for i in v_new]
    out += [texcoords[i - 1] for i in t_new]
    return b"\n".join(out + body) + b"\n"


def mhclo_slice(data: bytes, vertex_lines: int = 200) -> bytes:
    """A real .mhclo with its header, its first `vertex_lines` vertex bindings and its
    delete_verts section."""
    out: list[bytes] = []
    section = b""
    kept = 0
    for line in data.splitlines():
        words = line.split()
        if words and words[0] in (b"verts", b"delete_verts"):
            section = words[0]
            out.append(line)
        elif section == b"verts" and words and words[0][:1].isdigit():
            if kept < vertex_lines:
                out.append(line)
                kept += 1
        else:
            out.append(line)
    return b"\n".join(out) + b"\n"


def bvh_slice(data: bytes, frames: int = 4) -> bytes:
    """A real BVH with its hierarchy and its first `frames` frames (the count rewritten)."""
    head, _, motion = data.partition(b"MOTION")
    lines = motion.strip().splitlines()
    kept = [ln for ln in lines[2:] if ln.strip()][:frames]
    return head + b"MOTION\nFrames: %d\n" % len(kept) + lines[1] + b"\n" + b"\n".join(kept) + b"\n"
