"""nginx beside csip: the same bytes over the same mutual TLS, when Debian's nginx is installed.

``start(...)`` writes each captured body to a file, maps every request target (path and
query, ``$request_uri``) to its file, and runs nginx in the foreground as one process
(``master_process off``: the CPU the bench reads from /proc is all of it) pinned to the
server core like csip. TLS as csip's own context: TLS 1.2, the 2030.5 suites with CCM8
preferred, P-256, client certificates required and verified against the test SERCA,
session cache and tickets on; keep-alive without a request cap; ``open_file_cache`` on
(nginx's best case for static files). The aggregator walk has more files (20,040 for 10,000
devices) than a common open-file limit (20,000 here): nginx then failed about 1 % of those
requests with 500 (EMFILE). It now runs with the hard limit (``prlimit``) and a cache that
fits in it; where the bodies do not fit, the bench says so (nginx then opens files per
request in that mode).
"""

from __future__ import annotations

import os
import resource
import shutil
from pathlib import Path

from common import Proc, spawn
from csip.web.tls import COMPAT_CIPHERS

CANDIDATES = ("nginx", "/usr/sbin/nginx")
#: Descriptors nginx needs besides the cached bodies (connections, listener, logs).
CONNECTION_FILES = 1024


def binary() -> str | None:
    """nginx's path, or None when it is not installed (the bench says so and goes on)."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def start(
    binary_path: str, workdir: Path, name: str, pki: Path, port: int, bodies: dict[str, bytes]
) -> Proc:
    root = workdir / f"{name}-root"
    root.mkdir(parents=True, exist_ok=True)
    entries = []
    for number, (target, body) in enumerate(bodies.items()):
        (root / f"b{number}").write_bytes(body)
        entries.append(f"        {_quote(target)} b{number};")
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf = workdir / f"{name}.conf"
    conf.write_text(
        f"""{user}worker_processes 1;
master_process off;
daemon off;
pid {workdir / f"{name}.pid"};
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    server_tokens off;
    client_body_temp_path {root}/tmp;
    open_file_cache max={open_file_limit(len(bodies))[0] - CONNECTION_FILES} inactive=60s;
    open_file_cache_valid 60s;
    keepalive_requests 100000000;
    keepalive_timeout 75s;
    map_hash_max_size 262144;
    map_hash_bucket_size 256;
    map $request_uri $body {{
        default "";
{chr(10).join(entries)}
    }}
    server {{
        listen 127.0.0.1:{port} ssl backlog=1024;
        ssl_certificate {pki / "server-chain.pem"};
        ssl_certificate_key {pki / "server.key"};
        ssl_client_certificate {pki / "ca.pem"};
        ssl_verify_client on;
        ssl_verify_depth 4;
        ssl_protocols TLSv1.2;
        ssl_ciphers {COMPAT_CIPHERS};
        ssl_prefer_server_ciphers on;
        ssl_ecdh_curve prime256v1;
        ssl_session_cache shared:bench:20m;
        ssl_session_tickets on;
        default_type application/sep+xml;
        etag off;
        location / {{
            if ($body = "") {{ return 404; }}
            root {root};
            try_files /$body =404;
        }}
    }}
}}
"""
    )
    command = [binary_path, "-p", str(workdir), "-c", str(conf)]
    limit, _ = open_file_limit(len(bodies))
    if limit > resource.getrlimit(resource.RLIMIT_NOFILE)[0] and shutil.which("prlimit"):
        command = ["prlimit", f"--nofile={limit}", *command]
    return spawn(name, command, workdir)


def open_file_limit(files: int) -> tuple[int, str | None]:
    """The open-file limit nginx runs with (up to the hard limit: raising that needs
    CAP_SYS_RESOURCE) and, when its bodies cannot all stay open in open_file_cache beside
    the connections, what that means for its figure."""
    needed = files + CONNECTION_FILES
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if limit >= needed:
        return limit, None
    cached = limit - CONNECTION_FILES
    return limit, (
        f"nginx: {files} bodies, open-file limit {limit}: open_file_cache holds {cached} of "
        "them; the others are opened and closed by the requests that need them (its figures "
        "include that)"
    )
