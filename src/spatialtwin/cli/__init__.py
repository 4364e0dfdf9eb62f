"""The `spatialtwin` command line: one module per command group, registered here.

Each command module exposes `register(subparsers)`. A `SpatialTwinError` (bad input) prints
its message and exits with status 2; nothing else is caught. When the command line names a
command, only that command's module is imported: `spatialtwin serve` does not pay for the
numerics and MediaPipe the other commands import (about 2 s); `--help` imports them all.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from spatialtwin.errors import SpatialTwinError
from spatialtwin.native_logs import quiet_native_logs

COMMAND_MODULES = (
    "serve",
    "twin",
    "garment",
    "drape",
    "lod",
    "track",
    "template",
    "samples",
    "mirror",
    "keys",
    "token",
    "worker",
)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The parser with every command, or only the one `argv` names."""
    parser = argparse.ArgumentParser(prog="spatialtwin", description=__doc__.splitlines()[0])
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="also show the native libraries' info and warning lines (TFLite, MediaPipe)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    args = sys.argv[1:] if argv is None else argv
    first = next((a for a in args if not a.startswith("-")), None)
    named = first if first in COMMAND_MODULES else None
    for name in COMMAND_MODULES if named is None else (named,):
        try:
            module = importlib.import_module(f"spatialtwin.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"spatialtwin.cli.{name}":
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser(argv)
    args = parser.parse_args(argv)
    if not args.verbose:
        quiet_native_logs()
    try:
        return int(args.func(args) or 0)
    except SpatialTwinError as exc:
        if getattr(args, "json", False):
            print(json.dumps(exc.to_json()), file=sys.stderr)
        else:
            detail = f" ({exc.detail})" if exc.detail is not None else ""
            print(f"spatialtwin: error: {exc.message}{detail}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
