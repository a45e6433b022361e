"""Resolve under concurrent load, next to a trivial Django view served the same way.

Runs gunicorn against PostgreSQL on loopback, seeds a prompt with a production label and
an application key through the services, then drives each target with the same bounded
load (16 keep-alive clients, interleaved rounds of fixed duration) and prints requests/s, p50, p99 and errors.

    .venv/bin/python bench/resolve_load.py [--clients 16] [--seconds 15] [--workers 2-per-core]

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/aifactory_bench),
CACHE_URL (default redis://127.0.0.1:6379/3 when Redis answers, else per-process memory).
Targets (issue #3, two cores): resolve >= 0.5x the trivial view's throughput, p99 < 25 ms.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aifactory_bench"


def reachable(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=2).close()
        return True
    except OSError:
        return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    if not reachable(parsed.hostname or "127.0.0.1", parsed.port or 5432):
        sys.exit(
            f"PostgreSQL at {parsed.hostname}:{parsed.port or 5432} is not reachable; set DATABASE_URL."
        )
    name = parsed.path.lstrip("/")
    admin = url.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


SEED = """
import django; django.setup()
from django.core.cache import cache
from apps.workspace.demo import demo_setup
from apps.prompts.models import Application
from apps.prompts import services
from apps.core.models import ApiKey
demo_setup()
cache.clear()
app = Application.objects.get(slug="helpdesk-sidebar")
ApiKey.objects.filter(user=app.service_user, name="bench").update(revoked=True)
_, plain = services.application_key_create(actor=app.owner, application=app, name="bench")
print(plain)
"""


def run(cmd, env, **kw):
    return subprocess.run(cmd, env=env, cwd=ROOT, check=True, text=True, capture_output=True, **kw)


class Result:
    def __init__(self, name: str):
        self.name, self.latencies, self.errors, self.statuses = name, [], 0, {}
        self.lock = threading.Lock()
        self.elapsed = 0.0


def drive(
    port: int, path: str, headers: dict, clients: int, seconds: float, max_requests: int, name: str
) -> Result:
    result = Result(name)
    deadline = time.monotonic() + seconds
    budget = [max_requests]

    def worker():
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        local, errors, statuses = [], 0, {}
        while time.monotonic() < deadline:
            with result.lock:
                if budget[0] <= 0:
                    break
                budget[0] -= 1
            start = time.perf_counter()
            try:
                conn.request("GET", path, headers=headers)
                response = conn.getresponse()
                response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
                if response.status != 200:
                    errors += 1
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                continue
            local.append(time.perf_counter() - start)
        conn.close()
        with result.lock:
            result.latencies += local
            result.errors += errors
            for code, n in statuses.items():
                result.statuses[code] = result.statuses.get(code, 0) + n

    threads = [threading.Thread(target=worker) for _ in range(clients)]
    began = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result.elapsed = time.monotonic() - began
    return result


def summary(runs: list[Result]) -> dict:
    """Median round throughput (with its spread) and latencies pooled over the rounds."""
    lat = sorted(x for r in runs for x in r.latencies)
    q = statistics.quantiles(lat, n=100) if len(lat) >= 100 else [0] * 99
    rates = sorted(len(r.latencies) / r.elapsed for r in runs)
    return {
        "rps": statistics.median(rates),
        "min": rates[0],
        "max": rates[-1],
        "p50": q[49] * 1000,
        "p99": q[98] * 1000,
        "n": len(lat),
        "errors": sum(r.errors for r in runs),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument(
        "--workers",
        type=int,
        default=2 * (os.cpu_count() or 1),
        help="gunicorn workers (2 per core)",
    )
    parser.add_argument("--worker-class", default="sync", choices=["sync", "gthread"])
    parser.add_argument("--threads", type=int, default=1, help="threads per gthread worker")
    parser.add_argument(
        "--max-requests", type=int, default=200_000, help="bound per target and round"
    )
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds per target")
    args = parser.parse_args()

    db = os.environ.get("DATABASE_URL", DEFAULT_DB)
    ensure_database(db)
    cache_url = os.environ.get("CACHE_URL") or (
        "redis://127.0.0.1:6379/3" if reachable("127.0.0.1", 6379) else ""
    )
    env = {
        **os.environ,
        "DATABASE_URL": db,
        "CACHE_URL": cache_url,
        "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
        "AIFACTORY_VAR_DIR": str(ROOT / "var" / "bench"),
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "PYTHONPATH": str(ROOT),
    }
    python = sys.executable
    run([python, "manage.py", "migrate", "--noinput", "-v0"], env)
    key = run([python, "-c", SEED], env).stdout.strip().splitlines()[-1]

    port = free_port()
    gunicorn = Path(python).with_name("gunicorn")
    server = subprocess.Popen(
        [
            str(gunicorn),
            "aifactory.wsgi",
            "-b",
            f"127.0.0.1:{port}",
            "-w",
            str(args.workers),
            "--worker-class",
            args.worker_class,
            "--threads",
            str(args.threads),
            "--keep-alive",
            "30",
            "--log-level",
            "warning",
            "-e",
            "DJANGO_SETTINGS_MODULE=bench.settings_bench",
        ],
        env=env,
        cwd=ROOT,
    )
    try:
        deadline = time.monotonic() + 30
        while not reachable("127.0.0.1", port):
            if time.monotonic() > deadline or server.poll() is not None:
                sys.exit("gunicorn did not start")
            time.sleep(0.2)
        auth = {"Authorization": f"Api-Key {key}"}
        targets = [
            ("trivial view", "/bench/trivial", {}),
            ("resolve", "/api/v1/prompts/support-reply-draft/resolve?label=production", auth),
        ]
        for name, path, headers in targets:  # warm every worker's caches and connections
            drive(port, path, headers, args.clients, 2, 2_000, name)
        # Interleaved rounds: a burst of background load on this shared machine then hits
        # both targets alike. Throughput is the median round; latencies are pooled.
        rounds = {name: [] for name, _, _ in targets}
        for _ in range(args.rounds):
            for name, path, headers in targets:
                rounds[name].append(
                    drive(
                        port,
                        path,
                        headers,
                        args.clients,
                        args.seconds / args.rounds,
                        args.max_requests,
                        name,
                    )
                )
        results = {name: summary(runs) for name, runs in rounds.items()}
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=20)

    print(
        f"\n{args.clients} clients, {args.seconds:.0f} s per target in {args.rounds} interleaved rounds, gunicorn {args.workers} {args.worker_class} workers x {args.threads} threads, "
        f"PostgreSQL, cache: {'Redis' if cache_url else 'per-process memory'}, {os.cpu_count()} CPUs (load generator shares them)"
    )
    print(
        f"{'target':<14}{'req/s':>8}{'rounds min-max':>16}{'p50 ms':>9}{'p99 ms':>9}{'requests':>10}{'errors':>8}"
    )
    for name, r in results.items():
        spread = f"{r['min']:.0f}-{r['max']:.0f}"
        print(
            f"{name:<14}{r['rps']:>8.0f}{spread:>16}{r['p50']:>9.2f}{r['p99']:>9.2f}{r['n']:>10}{r['errors']:>8}"
        )
    ratio = results["resolve"]["rps"] / results["trivial view"]["rps"]
    p99 = results["resolve"]["p99"]
    print(
        f"\nresolve / trivial throughput: {ratio:.2f} (target >= 0.50: {'met' if ratio >= 0.5 else 'NOT met'})"
    )
    print(f"resolve p99: {p99:.1f} ms (target < 25 ms: {'met' if p99 < 25 else 'NOT met'})")
    return 1 if any(r["errors"] for r in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
