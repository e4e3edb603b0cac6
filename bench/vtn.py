"""OpenADR 3 VTN benchmark: 1,000 VENs polling their events, and a 1,000-subscriber webhook
fan-out, with a same-run baseline.

What it measures (issue 4, item 8):

1. **Polling.** 1,000 VEN clients, each with its own bearer token and its own ven (targets
   spread over ten groups), poll ``GET /events?programID=P`` over HTTPS keep-alive. The load
   comes from a small C client (written by this script into ``bench/out/vtnload.c`` and built
   with ``cc``; CLARIFICATIONS: "Benchmarks must not measure the load generator") pinned to
   core 1; each of its connections sends the next VEN's token on every request, so every
   request is a different VEN. csip is pinned to core 0. The **baseline** is a minimal aiohttp
   server on the same TLS settings and event loop, pinned to core 0 too, answering the exact
   JSON csip returned to each VEN (looked up by its Authorization header). csip and the
   baseline are measured alternately (the other one SIGSTOPped), ``--repeats`` times; medians
   of req/s, p99 and server CPU us/request (from /proc/PID/stat) are printed with the ratio.
   Target: csip/baseline req/s >= 0.6 (printed, not asserted).
2. **Webhooks.** Each VEN subscribes to EVENT updates with a callback on one of four loopback
   receivers (passing the echo check); the BL updates the event once; the time until all
   1,000 notifications arrived is printed. Target: under 5 s.

Run: ``python bench/vtn.py`` (about a minute), ``--quick`` for a smoke run. Needs Linux with
2+ cores, ``taskset``, ``cc`` and OpenSSL headers.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
BASE = "/openadr3/3.1.0"
SERVER_CORE, CLIENT_CORE = "0", "1"

LOADGEN_C = r"""
/* vtnload: keep-alive HTTPS GETs of one path, each request carrying the next bearer token
 * from a file (one per line).  One thread per connection.  Prints one JSON line. */
#define _GNU_SOURCE
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static int port, conc;
static double duration;
static const char *path, *ca;
static char **tokens;
static int ntokens;
static SSL_CTX *ctx;
static struct sockaddr_in addr;
static atomic_long ok, bad, errs;
static volatile int stop;

typedef struct { unsigned *lat; long n, cap; int idx; } worker_t;

static double now(void) {
    struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static SSL *dial(int *fd) {
    *fd = socket(AF_INET, SOCK_STREAM, 0);
    int one = 1; setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct timeval tv = {10, 0};
    setsockopt(*fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (connect(*fd, (struct sockaddr *)&addr, sizeof addr)) return NULL;
    SSL *s = SSL_new(ctx); SSL_set_fd(s, *fd);
    SSL_set_tlsext_host_name(s, "localhost");
    if (SSL_connect(s) != 1) { SSL_free(s); return NULL; }
    return s;
}

/* read one response; returns status or -1 */
static int response(SSL *s, char *buf, size_t cap) {
    size_t have = 0; char *end = NULL;
    while (!end) {
        int n = SSL_read(s, buf + have, (int)(cap - have - 1));
        if (n <= 0) return -1;
        have += n; buf[have] = 0;
        end = strstr(buf, "\r\n\r\n");
        if (!end && have >= cap - 1) return -1;
    }
    int status = atoi(buf + 9);
    long length = 0;
    for (char *p = buf; p < end; p++)
        if ((p == buf || p[-1] == '\n') && !strncasecmp(p, "content-length:", 15))
            length = atol(p + 15);
    size_t body = have - (size_t)(end + 4 - buf);
    while ((long)body < length) {
        int n = SSL_read(s, buf, (int)(cap - 1));
        if (n <= 0) return -1;
        body += n;
    }
    return status;
}

static void *run(void *arg) {
    worker_t *w = arg;
    char req[4096]; char *buf = malloc(1 << 20);
    int fd; SSL *s = dial(&fd);
    long k = w->idx;
    while (!stop) {
        if (!s) { atomic_fetch_add(&errs, 1); usleep(10000); s = dial(&fd); continue; }
        int len = snprintf(req, sizeof req,
            "GET %s HTTP/1.1\r\nHost: localhost:%d\r\nAuthorization: Bearer %s\r\n"
            "Accept: application/json\r\n\r\n",
            path, port, tokens[k % ntokens]);
        k += conc;
        double t0 = now();
        if (SSL_write(s, req, len) != len) { SSL_free(s); close(fd); s = NULL; continue; }
        int st = response(s, buf, 1 << 20);
        if (st < 0) { atomic_fetch_add(&errs, 1); SSL_free(s); close(fd); s = NULL; continue; }
        if (st >= 200 && st < 300) atomic_fetch_add(&ok, 1); else atomic_fetch_add(&bad, 1);
        if (w->n == w->cap) {
            w->cap = w->cap ? w->cap * 2 : 65536;
            w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
        }
        w->lat[w->n++] = (unsigned)((now() - t0) * 1e6);
    }
    if (s) { SSL_shutdown(s); SSL_free(s); close(fd); }
    free(buf);
    return NULL;
}

static int cmp(const void *a, const void *b) {
    unsigned x = *(const unsigned *)a, y = *(const unsigned *)b; return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    if (argc != 7) { fprintf(stderr, "usage: vtnload PORT CA PATH TOKENS CONC SECS\n"); return 2; }
    port = atoi(argv[1]); ca = argv[2]; path = argv[3];
    conc = atoi(argv[5]); duration = atof(argv[6]);
    FILE *f = fopen(argv[4], "r"); if (!f) return 2;
    char line[8192]; int cap = 1024; tokens = malloc(cap * sizeof *tokens);
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = 0; if (!line[0]) continue;
        if (ntokens == cap) { cap *= 2; tokens = realloc(tokens, cap * sizeof *tokens); }
        tokens[ntokens++] = strdup(line);
    }
    fclose(f);
    addr.sin_family = AF_INET; addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(0x7f000001);
    ctx = SSL_CTX_new(TLS_client_method());
    SSL_CTX_load_verify_locations(ctx, ca, NULL); SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    worker_t *ws = calloc(conc, sizeof *ws); pthread_t *ts = calloc(conc, sizeof *ts);
    struct rusage r0, r1; getrusage(RUSAGE_SELF, &r0);
    double t0 = now();
    for (int i = 0; i < conc; i++) { ws[i].idx = i; pthread_create(&ts[i], NULL, run, &ws[i]); }
    usleep((useconds_t)(duration * 1e6)); stop = 1;
    for (int i = 0; i < conc; i++) pthread_join(ts[i], NULL);
    double el = now() - t0; getrusage(RUSAGE_SELF, &r1);
    long total = 0; for (int i = 0; i < conc; i++) total += ws[i].n;
    unsigned *all = malloc((total + 1) * sizeof *all); long m = 0;
    for (int i = 0; i < conc; i++) {
        memcpy(all + m, ws[i].lat, ws[i].n * sizeof *all); m += ws[i].n;
    }
    qsort(all, m, sizeof *all, cmp);
    double cpu = (r1.ru_utime.tv_sec - r0.ru_utime.tv_sec)
               + (r1.ru_utime.tv_usec - r0.ru_utime.tv_usec) / 1e6
               + (r1.ru_stime.tv_sec - r0.ru_stime.tv_sec)
               + (r1.ru_stime.tv_usec - r0.ru_stime.tv_usec) / 1e6;
    printf("{\"requests\":%ld,\"ok\":%ld,\"non2xx\":%ld,\"errors\":%ld,"
           "\"elapsed_s\":%.3f,\"rps\":%.1f,"
           "\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"client_cpu_share\":%.3f}\n",
           m, (long)ok, (long)bad, (long)errs, el, m / el,
           m ? all[m / 2] / 1e3 : 0, m ? all[(long)(m * 0.99)] / 1e3 : 0, cpu / el);
    return 0;
}
"""


def log(message: str) -> None:
    print(f"[vtn-bench] {message}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def build_loadgen() -> Path:
    OUT.mkdir(exist_ok=True)
    source, binary = OUT / "vtnload.c", OUT / "vtnload"
    if not source.exists() or source.read_text() != LOADGEN_C:
        source.write_text(LOADGEN_C)
    if not binary.exists() or binary.stat().st_mtime < source.stat().st_mtime:
        subprocess.run(
            ["cc", "-O2", "-o", str(binary), str(source), "-lssl", "-lcrypto", "-lpthread"],
            check=True,
        )
    return binary


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- the baseline server ----------------------------------------------------------------
def run_baseline(port: int, certs: Path, bodies_file: Path) -> None:
    """A minimal aiohttp handler returning the same JSON (by Authorization header)."""
    from aiohttp import web

    from csip.config import Settings
    from csip.web.vtn_app import vtn_tls_context

    bodies = {k: v.encode() for k, v in json.loads(bodies_file.read_text()).items()}

    async def handler(request: web.Request) -> web.Response:
        body = bodies.get(request.headers.get("Authorization", ""))
        if body is None:
            return web.Response(status=404)
        return web.Response(body=body, content_type="application/json")

    async def main() -> None:
        app = web.Application()
        app.router.add_get(BASE + "/events", handler)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        context = vtn_tls_context(Settings(certs_dir=certs))
        await web.TCPSite(runner, "127.0.0.1", port, ssl_context=context, backlog=1024).start()
        print(f"ready {port}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())


# ---- setup through the API ---------------------------------------------------------------
class Receivers:
    """Loopback webhook receivers: answer the echo check, count notifications by arrival."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.ports: list[int] = []
        self.arrivals: list[float] = []
        self.runners: list[Any] = []

    async def start(self) -> None:
        from aiohttp import web

        async def echo(request: web.Request) -> web.Response:
            return web.Response(text=request.query.get("echo", ""))

        async def note(request: web.Request) -> web.Response:
            await request.read()
            self.arrivals.append(time.monotonic())
            return web.Response(status=204)

        for _ in range(self.count):
            app = web.Application()
            app.router.add_get("/{tail:.*}", echo)
            app.router.add_post("/{tail:.*}", note)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0, backlog=1024)
            await site.start()
            self.ports.append(int(runner.addresses[0][1]))
            self.runners.append(runner)

    async def close(self) -> None:
        for runner in self.runners:
            await runner.cleanup()


async def setup(
    base: str, ca: Path, data: Path, vens: int, receivers: Receivers
) -> tuple[dict[str, str], str, str, str]:
    """Clients (in the database directly: 1,000 scrypt hashes would time the KDF), vens,
    a program with events, one subscription per VEN. Returns (tokens, bl token, ids)."""
    import aiohttp

    from csip.config import Settings
    from csip.domain.clock import Clock
    from csip.services.bus import LocalBus
    from csip.services.changes import Changes
    from csip.services.vtn_auth import VtnAuth, hash_secret
    from csip.store import Store
    from csip.store import openadr as store_oadr
    from csip.store.openadr import VtnClient

    settings = Settings(data_dir=data)
    store = Store(settings.db_url)
    clock = Clock()
    auth = VtnAuth(store, settings, clock, Changes(store, LocalBus(), clock))
    await auth.start()
    shared_hash = hash_secret("bench-secret-not-used")
    tokens: dict[str, str] = {}
    clients = []
    for i in range(vens):
        client = VtnClient(f"ven-{i}", f"ven-bench-{i:05d}", shared_hash, "ven", (
            "read_targets", "read_ven_objects", "write_reports", "write_subscriptions", "write_vens"
        ), time.time())  # fmt: skip
        clients.append(client)
    for client in clients:
        await store_oadr.create_client(store, client)
        tokens[client.client_id] = auth.mint(client)[0]
    bl = VtnClient("bl", "bl-bench", shared_hash, "bl", (
        "read_all", "read_targets", "read_ven_objects", "write_programs", "write_events",
        "write_subscriptions", "write_vens",
    ), time.time())  # fmt: skip
    await store_oadr.create_client(store, bl)
    bl_token = auth.mint(bl)[0]
    await store.close()

    import ssl

    context = ssl.create_default_context(cafile=str(ca))
    connector = aiohttp.TCPConnector(ssl=context, limit=32)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call(method: str, path: str, token: str, body: Any = None) -> Any:
            headers = {"Authorization": f"Bearer {token}"}
            async with session.request(method, base + path, json=body, headers=headers) as r:
                data = await r.json()
                if r.status >= 300:
                    raise RuntimeError(f"{method} {path}: {r.status} {data}")
                return data

        program = await call("POST", "/programs", bl_token, {"programName": "bench"})
        event_body = {
            "programID": program["id"],
            "eventName": "bench-event",
            "intervalPeriod": {"start": "2031-01-01T00:00:00Z", "duration": "PT1H"},
            "intervals": [
                {"id": i, "payloads": [{"type": "PRICE", "values": [0.1 * i]}]} for i in range(4)
            ],
        }
        event = await call("POST", "/events", bl_token, event_body)
        for group in range(3):  # events only some VENs see
            await call("POST", "/events", bl_token, {**event_body, "targets": [f"group-{group}"]})

        async def enrol(i: int, client: VtnClient) -> None:
            await call("POST", "/vens", bl_token, {
                "objectType": "BL_VEN_REQUEST", "venName": f"ven-{i}",
                "clientID": client.client_id, "targets": [f"group-{i % 10}"],
            })  # fmt: skip
            port = receivers.ports[i % len(receivers.ports)]
            await call("POST", "/subscriptions", tokens[client.client_id], {
                "clientName": f"ven-{i}",
                "programID": program["id"],
                "objectOperations": [{
                    "objects": ["EVENT"], "operations": ["UPDATE"],
                    "callbackUrl": f"http://127.0.0.1:{port}/ven/{i}", "bearerToken": f"t{i}",
                }],
            })  # fmt: skip

        for start in range(0, vens, 50):
            await asyncio.gather(
                *(enrol(i, clients[i]) for i in range(start, min(vens, start + 50)))
            )
    return tokens, bl_token, program["id"], event["id"]


async def capture(base: str, ca: Path, path: str, tokens: dict[str, str]) -> dict[str, str]:
    """The exact body csip returns to each VEN (the baseline serves these)."""
    import ssl

    import aiohttp

    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)))
    bodies: dict[str, str] = {}
    async with aiohttp.ClientSession(connector=connector) as session:
        for token in tokens.values():
            header = f"Bearer {token}"
            async with session.get(base + path, headers={"Authorization": header}) as r:
                assert r.status == 200, await r.text()
                bodies[header] = (await r.read()).decode()
    return bodies


async def fan_out(
    base: str, ca: Path, bl_token: str, program_id: str, event_id: str, receivers: Receivers,
    expected: int, within: float,
) -> dict[str, Any]:  # fmt: skip
    import ssl

    import aiohttp

    receivers.arrivals.clear()
    connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=str(ca)))
    body = {"programID": program_id, "eventName": f"bench-update-{time.time()}"}
    async with aiohttp.ClientSession(connector=connector) as session:
        t0 = time.monotonic()
        async with session.put(
            f"{base}/events/{event_id}", json=body, headers={"Authorization": f"Bearer {bl_token}"}
        ) as r:
            assert r.status == 200, await r.text()
        answered = time.monotonic() - t0
    deadline = t0 + within
    while len(receivers.arrivals) < expected and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)
    arrivals = sorted(a - t0 for a in receivers.arrivals)
    return {
        "subscribers": expected,
        "delivered": len(arrivals),
        "put_answered_s": round(answered, 4),
        "first_s": round(arrivals[0], 3) if arrivals else None,
        "p50_s": round(arrivals[len(arrivals) // 2], 3) if arrivals else None,
        "last_s": round(arrivals[-1], 3) if arrivals else None,
    }


# ---- measurement ---------------------------------------------------------------------------
def measure(loadgen: Path, port: int, ca: Path, path: str, tokens_file: Path, pid: int,
            conc: int, seconds: float) -> dict[str, Any]:  # fmt: skip
    cpu0 = cpu_seconds(pid)
    result = subprocess.run(
        ["taskset", "-c", CLIENT_CORE, str(loadgen), str(port), str(ca), path, str(tokens_file),
         str(conc), str(seconds)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    cpu = cpu_seconds(pid) - cpu0
    figures: dict[str, Any] = json.loads(result.stdout)
    figures["cpu_us_per_req"] = round(cpu / max(figures["requests"], 1) * 1e6, 1)
    return figures


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))


async def bench(args: argparse.Namespace) -> dict[str, Any]:
    loadgen = build_loadgen()
    tmp = Path(tempfile.mkdtemp(prefix="csip-vtn-bench-"))
    procs: list[subprocess.Popen[str]] = []
    receivers = Receivers(4)
    try:
        certs, data = tmp / "certs", tmp / "data"
        csip = [sys.executable, "-m", "csip.cli"]
        command = [*csip, "certs", "init", "--dir", str(certs)]
        await asyncio.to_thread(subprocess.run, command, check=True, capture_output=True)
        ca = certs / "ca.pem"
        vtn_port, base_port = free_port(), free_port()
        await receivers.start()
        data.mkdir()
        env = {**os.environ, "CSIP_VTN_WEBHOOK_ALLOW_LOOPBACK": "true", "CSIP_LOG_LEVEL": "WARNING"}
        log_file = (tmp / "csip.log").open("w")
        server = subprocess.Popen(  # noqa: ASYNC220 - started, never awaited
            ["taskset", "-c", SERVER_CORE, *csip, "serve", "--data-dir", str(data),
             "--certs-dir", str(certs), "--sep2-port", str(free_port()),
             "--admin-port", str(free_port()), "--vtn-port", str(vtn_port)],
            stdout=log_file, stderr=subprocess.STDOUT, env=env, text=True,
        )  # fmt: skip
        procs.append(server)
        deadline = time.monotonic() + 60
        while "Ctrl-C stops" not in (tmp / "csip.log").read_text():
            if server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError((tmp / "csip.log").read_text())
            await asyncio.sleep(0.1)
        base = f"https://localhost:{vtn_port}{BASE}"
        t0 = time.monotonic()
        tokens, bl_token, program_id, event_id = await setup(base, ca, data, args.vens, receivers)
        setup_s = time.monotonic() - t0
        log(f"setup: {args.vens} VENs with vens and subscriptions in {setup_s:.1f} s")
        path = f"{BASE}/events?programID={program_id}"
        bodies = await capture(f"https://localhost:{vtn_port}", ca, path, tokens)
        sizes = sorted(len(b) for b in bodies.values())
        (tmp / "bodies.json").write_text(json.dumps(bodies))
        tokens_file = tmp / "tokens.txt"
        tokens_file.write_text("\n".join(tokens.values()) + "\n")
        baseline = subprocess.Popen(  # noqa: ASYNC220
            ["taskset", "-c", SERVER_CORE, sys.executable, str(Path(__file__)), "--baseline",
             "--port", str(base_port), "--certs", str(certs), "--bodies", str(tmp / "bodies.json")],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(baseline)
        assert baseline.stdout is not None
        assert baseline.stdout.readline().startswith("ready")

        # webhook fan-out first (nothing else running), then the poll load
        fan = [
            await fan_out(base, ca, bl_token, program_id, event_id, receivers, args.vens, 60)
            for _ in range(args.fanouts)
        ]
        log(f"fan-out: {fan}")

        runs: dict[str, list[dict[str, Any]]] = {"csip": [], "baseline": []}
        targets = {"csip": (server, vtn_port), "baseline": (baseline, base_port)}
        for name in ("csip", "baseline"):  # warm both
            proc, port = targets[name]
            measure(loadgen, port, ca, path, tokens_file, proc.pid, args.connections, 1)
        order = ["csip", "baseline", "baseline", "csip"] * args.repeats
        for name in order[: 2 * args.repeats]:
            proc, port = targets[name]
            other = targets["baseline" if name == "csip" else "csip"][0]
            other.send_signal(signal.SIGSTOP)
            try:
                run = measure(loadgen, port, ca, path, tokens_file, proc.pid, args.connections,
                              args.duration)  # fmt: skip
            finally:
                other.send_signal(signal.SIGCONT)
            runs[name].append(run)
            log(f"{name}: {run}")
        result: dict[str, Any] = {"config": vars(args), "setup_s": round(setup_s, 1),
                                  "body_bytes": [sizes[0], sizes[-1]]}  # fmt: skip
        for name, values in runs.items():
            result[name] = {
                key: median_of(values, key)
                for key in ("rps", "p50_ms", "p99_ms", "cpu_us_per_req", "client_cpu_share")
            }
            result[name]["non2xx"] = sum(r["non2xx"] for r in values)
            result[name]["errors"] = sum(r["errors"] for r in values)
        result["ratio"] = round(result["csip"]["rps"] / result["baseline"]["rps"], 3)
        result["cpu_ratio"] = round(
            result["baseline"]["cpu_us_per_req"] / result["csip"]["cpu_us_per_req"], 3
        )
        result["fan_out"] = fan
        result["targets"] = {
            "poll ratio >= 0.6": result["ratio"] >= 0.6,
            "1,000 webhooks < 5 s": all(f["last_s"] is not None and f["last_s"] < 5 for f in fan)
            and all(f["delivered"] == f["subscribers"] for f in fan),
        }
        return result
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
        await receivers.close()
        if args.keep:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)


def report(result: dict[str, Any]) -> None:
    c, b = result["csip"], result["baseline"]
    print(f"\nGET /events?programID=... by {result['config']['vens']} VENs (each request a "
          f"different VEN's token), {result['config']['connections']} keep-alive HTTPS "
          f"connections, body {result['body_bytes'][0]}-{result['body_bytes'][1]} B")  # fmt: skip
    print(f"{'':10} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'CPU us/req':>11} {'client':>7}")
    for name, row in (("csip", c), ("baseline", b)):
        print(f"{name:10} {row['rps']:9.0f} {row['p50_ms']:8.2f} {row['p99_ms']:8.2f} "
              f"{row['cpu_us_per_req']:11.1f} {row['client_cpu_share']:7.0%}")  # fmt: skip
    verdict = "meets" if result["targets"]["poll ratio >= 0.6"] else "MISSES"
    print(
        f"ratio csip/baseline req/s {result['ratio']:.2f} (target >= 0.6: {verdict}); "
        f"CPU-derived ratio {result['cpu_ratio']:.2f}"
    )
    for fan in result["fan_out"]:
        print(f"webhook fan-out: {fan['delivered']}/{fan['subscribers']} delivered, first "
              f"{fan['first_s']} s, median {fan['p50_s']} s, last {fan['last_s']} s "
              f"(target < 5 s); the PUT answered in {fan['put_answered_s']} s")  # fmt: skip
    print(json.dumps(result))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vens", type=int, default=1000)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--fanouts", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="200 VENs, 2 s runs, 1 repeat")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--baseline", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--certs", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--bodies", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.baseline:
        run_baseline(args.port, args.certs, args.bodies)
        return
    if args.quick:
        args.vens, args.duration, args.repeats, args.fanouts = 200, 2.0, 1, 1
    report(asyncio.run(bench(args)))


if __name__ == "__main__":
    main()
