"""Fill in deploy/nginx/spatialtwin.conf.template (and, for a private nginx, a whole nginx.conf).

    # the site, for Debian's /etc/nginx/sites-available (then link it into sites-enabled)
    python3 deploy/nginx/render.py site --listen 0.0.0.0:80 \\
        --server 127.0.0.1:8081 --server 127.0.0.1:8082 \\
        --blobs /var/lib/spatialtwin/blobs --cache /var/cache/nginx/spatialtwin \\
        -o /etc/nginx/sites-available/spatialtwin.conf

    # a private nginx with every file under one folder (tests, benchmarks, a laptop):
    python3 deploy/nginx/render.py standalone --prefix /tmp/st-nginx --listen 127.0.0.1:8080 \\
        --server 127.0.0.1:8081 --blobs var/data/blobs
    /usr/sbin/nginx -p /tmp/st-nginx -c /tmp/st-nginx/nginx.conf -e /tmp/st-nginx/error.log \\
        -g 'daemon off;'

Standard library only, so it runs with any Python 3 on the proxy machine. A placeholder is
`${SPATIALTWIN_NAME}`; every one must be given a value, and no other text changes (nginx's own
`$variables` stay as they are), so `envsubst` with the same names renders the same file.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

HERE = Path(__file__).resolve().parent
SITE_TEMPLATE = HERE / "spatialtwin.conf.template"
PLACEHOLDER = re.compile(r"\$\{(SPATIALTWIN_[A-Z_]+)\}")
ACCEL_PREFIX = "/_spatialtwin_blobs/"  # the template's internal location; servers' --accel-redirect
MIME_TYPES = "/etc/nginx/mime.types"


def fill(template: str, values: Mapping[str, str]) -> str:
    """`template` with every `${SPATIALTWIN_…}` replaced; a missing or unused value is an error
    (a typo must not leave a placeholder in a config nginx would then refuse or misread)."""
    names = set(PLACEHOLDER.findall(template))
    missing = sorted(names - set(values))
    unused = sorted(set(values) - names)
    if missing or unused:
        raise ValueError(f"placeholders missing values: {missing}; values not used: {unused}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def upstream_lines(servers: Sequence[str], max_fails: int = 1, fail_timeout_s: int = 5) -> str:
    """One `server` line per server process. One failure takes a server out of the rotation
    for `fail_timeout_s` (it is tried again after), so a dead server costs one retry, not one
    per request."""
    if not servers:
        raise ValueError("at least one --server host:port is needed")
    for server in servers:
        if not re.fullmatch(r"[A-Za-z0-9.\-\[\]:]+:\d{1,5}|unix:/[^\s;{}]+", server):
            raise ValueError(f"not host:port or unix:/path: {server!r}")
    return "\n    ".join(
        f"server {s} max_fails={max_fails} fail_timeout={fail_timeout_s}s;" for s in servers
    )


def site_values(
    *,
    listen: str,
    servers: Sequence[str],
    blobs: Path,
    cache: Path,
    fill_socket: Path,
    access_log: str,
    includes: Path,
    server_name: str = "_",
    level_cache_s: int = 1,
) -> dict[str, str]:
    """The template's values. `level_cache_s` (whole seconds: nginx's proxy_cache_valid has no
    finer unit) 0 turns the level-access micro-cache off (every level request asks a server)."""
    paths = (
        ("blobs", blobs),
        ("cache", cache),
        ("fill-socket", fill_socket),
        ("includes", includes),
    )
    for name, path in paths:
        if not path.is_absolute() or re.search(r"[\s;{}'\"$]", str(path)):
            raise ValueError(f"--{name} must be an absolute path without spaces or ;{{}}$: {path}")
    if not 0 <= level_cache_s <= 3600:
        raise ValueError("--level-cache-s must be 0-3600 whole seconds")
    return {
        "SPATIALTWIN_LISTEN": listen,
        "SPATIALTWIN_SERVER_NAME": server_name,
        "SPATIALTWIN_UPSTREAM_SERVERS": upstream_lines(servers),
        "SPATIALTWIN_BLOBS": str(blobs).rstrip("/"),
        "SPATIALTWIN_NGINX_CACHE": str(cache),
        "SPATIALTWIN_FILL_SOCKET": str(fill_socket),
        "SPATIALTWIN_LEVEL_CACHE": "spatialtwin_levels" if level_cache_s > 0 else "off",
        "SPATIALTWIN_LEVEL_PASS": (
            "http://spatialtwin_level_fill" if level_cache_s > 0 else "http://spatialtwin"
        ),
        "SPATIALTWIN_LEVEL_CACHE_VALID": f"{max(level_cache_s, 1)}s",
        "SPATIALTWIN_ACCESS_LOG": access_log,
        "SPATIALTWIN_SITE_INCLUDES": str(includes),
    }


def render_site(values: Mapping[str, str]) -> str:
    return fill(SITE_TEMPLATE.read_text(), values)


def standalone_main(prefix: Path, site: Path, workers: int | str = "auto") -> str:
    """A whole nginx.conf for a private nginx whose pid, logs and temporary files all lie under
    `prefix`. Run as root, its workers stay root too (they must read the blob folder wherever it
    is, e.g. a test's private temporary folder); a system nginx uses the site file instead."""
    user = "user root root;\n" if os.geteuid() == 0 else ""
    temp = {name: prefix / "temp" / name for name in ("body", "proxy", "fastcgi", "uwsgi", "scgi")}
    return (
        f"{user}worker_processes {workers};\n"
        f"pid {prefix / 'nginx.pid'};\n"
        f"error_log {prefix / 'error.log'} warn;\n"
        "events { worker_connections 4096; }\n"
        "http {\n"
        f"    include {MIME_TYPES};\n"
        "    default_type application/octet-stream;\n"
        "    sendfile on;\n"
        "    tcp_nopush on;\n"
        "    tcp_nodelay on;\n"
        "    server_tokens off;\n"
        f"    client_body_temp_path {temp['body']};\n"
        f"    proxy_temp_path {temp['proxy']};\n"
        f"    fastcgi_temp_path {temp['fastcgi']};\n"
        f"    uwsgi_temp_path {temp['uwsgi']};\n"
        f"    scgi_temp_path {temp['scgi']};\n"
        f"    include {site};\n"
        "}\n"
    )


def write_standalone(
    prefix: Path,
    *,
    listen: str,
    servers: Sequence[str],
    blobs: Path,
    level_cache_s: int = 1,
    workers: int | str = "auto",
) -> Path:
    """Write `prefix/nginx.conf` and `prefix/spatialtwin.conf` (+ `site.d/` for additions,
    `temp/`, `cache/`); returns the nginx.conf to pass to `nginx -c`."""
    prefix = prefix.resolve()
    for folder in ("site.d", "temp", "cache"):
        (prefix / folder).mkdir(parents=True, exist_ok=True)
    values = site_values(
        listen=listen,
        servers=servers,
        blobs=blobs.resolve(),
        cache=prefix / "cache",
        fill_socket=prefix / "level-fill.sock",
        access_log=str(prefix / "access.log"),
        includes=prefix / "site.d",
        level_cache_s=level_cache_s,
    )
    site = prefix / "spatialtwin.conf"
    site.write_text(render_site(values))
    main = prefix / "nginx.conf"
    main.write_text(standalone_main(prefix, site, workers))
    return main


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("site", "standalone"):
        p = sub.add_parser(name)
        p.add_argument("--listen", default="0.0.0.0:80")
        p.add_argument("--server", action="append", required=True, help="host:port (repeat)")
        p.add_argument("--blobs", type=Path, required=True, help="the store's blob folder")
        p.add_argument("--level-cache-s", type=int, default=1)
        if name == "site":
            p.add_argument("--cache", type=Path, default=Path("/var/cache/nginx/spatialtwin"))
            p.add_argument(
                "--fill-socket", type=Path, default=Path("/var/cache/nginx/spatialtwin-fill.sock")
            )
            p.add_argument("--access-log", default="/var/log/nginx/spatialtwin.access.log")
            p.add_argument("--includes", type=Path, default=Path("/etc/nginx/spatialtwin.d"))
            p.add_argument("--server-name", default="_")
            p.add_argument("-o", "--output", type=Path, help="file to write (default: stdout)")
        else:
            p.add_argument("--prefix", type=Path, required=True)
            p.add_argument("--workers", default="auto")
    args = parser.parse_args(argv)
    try:
        if args.command == "site":
            text = render_site(
                site_values(
                    listen=args.listen,
                    servers=args.server,
                    blobs=args.blobs,
                    cache=args.cache,
                    fill_socket=args.fill_socket,
                    access_log=args.access_log,
                    includes=args.includes,
                    server_name=args.server_name,
                    level_cache_s=args.level_cache_s,
                )
            )
            if args.output is None:
                sys.stdout.write(text)
            else:
                args.output.write_text(text)
        else:
            print(
                write_standalone(
                    args.prefix,
                    listen=args.listen,
                    servers=args.server,
                    blobs=args.blobs,
                    level_cache_s=args.level_cache_s,
                    workers=args.workers,
                )
            )
    except ValueError as exc:
        print(f"render.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
