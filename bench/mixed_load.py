"""Mixed load on a production server, next to resolve on the same server idle.

Runs what an operator runs, on loopback: gunicorn with `aifactory.settings.production`
as deploy/ starts it (4 workers x 4 threads; requests carry the X-Forwarded-Proto header of
the TLS proxy in front), one Celery worker at Nice=10 as deploy/'s unit runs it
(`--concurrency 1`, AIFACTORY_EVAL_THREADS=1), PostgreSQL and Redis. `--hot-workers N` adds
the second, small pool for resolve and render that docs/OPERATIONS.md recommends where web
and workers share a machine. Loads the demo workspace, then measures:

1. baseline: resolve alone on the idle server, --resolve-rate per second over --clients
   clients (0: as fast as they go);
2. mixed: the same resolve load while render, telemetry batches, evaluation runs (started
   through the API with fresh outputs, scored by the worker, polled until done), admin pages
   (a compliance officer's session) and scorecard pages (a business owner's session) run at
   paced rates.

Prints requests/s, p50, p99 and errors for every kind of request, resolve's ratios to its
baseline, the share of the mixed phase the worker spent scoring, the load average, and
PASS/MISS against the target. Exits non-zero on any error or when a service is missing.

    .venv/bin/python bench/mixed_load.py [--duration 80] [--hot-workers 2] [--json figures.json]

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/aifactory_bench_mixed;
flushed), CELERY_BROKER_URL (default redis://127.0.0.1:6379/6), CACHE_URL (default: the
broker's Redis database; cleared and purged at start). Target (issue #7, two cores): zero
errors, resolve p99 under 50 ms while an evaluation run is scoring on the worker.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import http.client
import itertools
import json
import os
import random
import re
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from urllib.parse import urlencode, urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._harness import (  # noqa: E402
    Budget,
    Children,
    Client,
    Workload,
    background,
    closed_loop,
    cpu_seconds,
    exit_on_sigterm,
    paced,
)
from bench.resolve_load import ensure_database, free_port, reachable  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aifactory_bench_mixed"
DEFAULT_BROKER = "redis://127.0.0.1:6379/6"
TARGET_P99_MS = 50.0
# The resolve window counts as "while scoring" only if the worker was busy for most of it.
MIN_SCORING_SHARE = 0.9

PROMPT = "support-reply-draft"
RESOLVE = f"/api/v1/prompts/{PROMPT}/resolve?label=production"
RENDER = f"/api/v1/prompts/{PROMPT}/render"
TELEMETRY = "/api/v1/telemetry"
RUNS = "/api/v1/evaluations/runs/"
SUITE = "support-reply-quality"
FINISHED = {"completed", "failed", "cancelled"}
# What the TLS-terminating proxy in front of gunicorn adds (production redirects plain HTTP).
PROXY = {"X-Forwarded-Proto": "https"}


def say(text: str) -> None:
    print(text, flush=True)


def check_services(database: str, broker: str, cache: str) -> None:
    """Exit with a clear message unless PostgreSQL and the Redis servers answer."""
    import psycopg

    for name, url in (("broker", broker), ("cache", cache)):
        parsed = urlparse(url)
        if parsed.scheme != "redis":
            sys.exit(f"The {name} must be Redis (redis://…), not {url!r}.")
        if not reachable(parsed.hostname or "127.0.0.1", parsed.port or 6379):
            sys.exit(
                f"Redis at {parsed.hostname}:{parsed.port or 6379} ({name}) is not reachable; "
                "start it or set CELERY_BROKER_URL / CACHE_URL."
            )
    try:
        ensure_database(database)  # exits itself when PostgreSQL does not answer
    except psycopg.Error as exc:
        sys.exit(f"PostgreSQL refused the benchmark ({database}): {exc}")


def manage(env: dict, *command: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        env=env,
        cwd=ROOT,
        text=True,
        capture_output=True,
    )
    if result.returncode:
        sys.exit(f"manage.py {' '.join(command)} failed:\n{result.stdout}{result.stderr}")


def seed() -> dict:
    """The demo workspace (fresh after the flush) and what the workloads need from it."""
    from django.contrib.auth import get_user_model
    from django.core.cache import cache
    from django.db import connections

    from aifactory.celery import app
    from apps.approvals.models import ApprovalRequest
    from apps.charters.models import Charter
    from apps.core.services import api_key_create
    from apps.evaluations.demo import demo_cases, demo_outputs
    from apps.prompts import services as prompt_services
    from apps.prompts.models import Application
    from apps.workspace.demo import DEMO_USERS, demo_setup

    cache.clear()  # the database was flushed: cached ids and permission decisions are stale
    app.control.purge()  # batches left queued by an interrupted earlier benchmark
    demo_setup()
    application = Application.objects.get(slug="helpdesk-sidebar")
    _, app_key = prompt_services.application_key_create(
        actor=application.owner, application=application, name="bench-mixed"
    )
    # The CI pipeline that starts evaluation runs acts for the platform engineer.
    _, ci_key = api_key_create(user=get_user_model().objects.get(username="pat"), name="ci")
    charter = Charter.objects.get(slug="support-reply-drafting")
    cases = demo_cases()
    passwords = {u.username: u.password for u in DEMO_USERS}
    seeded = {
        "app_key": app_key,
        "ci_key": ci_key,
        "charter": charter.slug,
        "metrics": list(charter.metrics.values_list("pk", flat=True)),
        "approval": ApprovalRequest.objects.order_by("pk").values_list("pk", flat=True).first(),
        "variables": [case["variables"] for case in cases],
        "outputs": demo_outputs(cases, 2),
        "staff": ("carl", passwords["carl"]),
        "owner": ("olivia", passwords["olivia"]),
    }
    connections.close_all()
    return seeded


def login(port: int, path: str, username: str, password: str) -> dict:
    """Sign in through the login form as a browser does; returns the session cookies."""
    client = Client(port, PROXY)
    status, body = client.request("GET", path)
    token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', body)
    if status != 200 or token is None:
        sys.exit(f"GET {path}: HTTP {status}, no login form")
    form = urlencode(
        {"username": username, "password": password, "csrfmiddlewaretoken": token[1].decode()}
    )
    status, body = client.request(
        "POST",
        path,
        form.encode(),
        {
            "Content-Type": "application/x-www-form-urlencoded",
            "Referer": f"https://127.0.0.1:{port}{path}",
        },
    )
    if status != 302 or "sessionid" not in client.cookies:
        sys.exit(f"{username} could not sign in at {path}: HTTP {status} {body[:300]!r}")
    client.close()
    return client.cookies


class Runs:
    """Keeps `in_flight` evaluation runs going as a CI pipeline would: start one with fresh
    outputs, poll each every `poll` seconds (the detail with its summary), start the next
    as soon as one finishes."""

    def __init__(self, port: int, key: str, outputs: list[dict], in_flight: int, poll: float):
        self.port, self.outputs, self.in_flight, self.poll = port, outputs, in_flight, poll
        self.headers = {**PROXY, "Authorization": f"Api-Key {key}"}
        self.start = Workload("run start")
        self.read = Workload("run read")
        self.ids: list[int] = []
        self.completed = 0
        self.pending: list[int] = []
        self.bodies: collections.deque[bytes] = collections.deque()

    def prepare(self, count: int) -> None:
        """Build request bodies ahead, so that the load generator spends no CPU on them while
        measuring (more are built on the fly if the worker outpaces the estimate)."""
        self.bodies.extend(self.body() for _ in range(count))

    serial = itertools.count(1)  # shared: no two runs (warm-up included) post the same text

    def body(self) -> bytes:
        """The demo's recorded v2 outputs with every sentence made new, as a model's fresh
        drafts are, so that the worker embeds them rather than finding them in its cache."""
        from apps.evaluations.scoring.semantic import split_sentences

        n = next(self.serial)
        outputs = [
            {
                "id": item["id"],
                "output": " ".join(
                    f"{s[:-1]} (ref {n}-{i}-{k}){s[-1]}"
                    if s[-1] in ".!?"
                    else f"{s} (ref {n}-{i}-{k})"
                    for k, s in enumerate(split_sentences(item["output"]))
                ),
            }
            for i, item in enumerate(self.outputs)
        ]
        return json.dumps(
            {
                "suite": SUITE,
                "prompt": PROMPT,
                "version": 2,
                "outputs": outputs,
                "note": f"bench/mixed_load.py run {n}",
            }
        ).encode()

    def start_one(self, client: Client) -> int | None:
        body = self.bodies.popleft() if self.bodies else self.body()
        result = self.start.call(
            lambda: client.request("POST", RUNS, body, {"Content-Type": "application/json"}),
            expect=(201,),
        )
        if result is None or result[0] != 201:
            return None
        run_id = json.loads(result[1])["id"]
        self.ids.append(run_id)
        return run_id

    def status(self, client: Client, run_id: int) -> str | None:
        """Read the run; count it as an error if it failed or was cancelled."""
        result = self.read.call(lambda: client.request("GET", f"{RUNS}{run_id}/"))
        if result is None or result[0] != 200:
            return None
        run = json.loads(result[1])
        if run["status"] in FINISHED and run["status"] != "completed":
            self.read.fail(f"run {run_id} {run['status']}: {(run.get('error') or '')[:200]}")
        return run["status"]

    def loop(self, stop: threading.Event) -> None:
        client = Client(self.port, self.headers)
        while not stop.is_set():
            while len(self.pending) < self.in_flight and not stop.is_set():
                run_id = self.start_one(client)
                if run_id is None:
                    stop.wait(self.poll)  # do not hammer a server that refuses runs
                    break
                self.pending.append(run_id)
            stop.wait(self.poll)
            for run_id in list(self.pending):
                if stop.is_set():
                    break
                status = self.status(client, run_id)
                if status in FINISHED:
                    self.pending.remove(run_id)
                    self.completed += status == "completed"
        client.close()


def worker_activity(
    run_ids: list[int], began: float, ended: float, *, skip_first: bool = False
) -> dict:
    """What the worker did for these runs within [began, ended] (epoch seconds): the share of
    the time it had a batch claimed, and its speed over the batches it finished in it
    (without each run's first batch with `skip_first`: the one that loaded the model)."""
    from django.db import connections

    from apps.evaluations.models import RunBatch

    batches = list(
        RunBatch.objects.filter(run_id__in=run_ids, claimed_at__isnull=False).values_list(
            "claimed_at", "finished_at", "first_position", "last_position", "index"
        )
    )
    connections.close_all()
    spans = sorted((c.timestamp(), f.timestamp() if f else ended) for c, f, *_ in batches)
    busy, cursor = 0.0, began
    for start, end in spans:
        start, end = max(start, cursor), min(end, ended)
        if end > start:
            busy += end - start
            cursor = end
    done = [
        (last - first + 1, (f - c).total_seconds())
        for c, f, first, last, index in batches
        if f and began <= c.timestamp() and f.timestamp() <= ended and (index or not skip_first)
    ]
    cases, seconds = sum(n for n, _ in done), sum(t for _, t in done)
    return {
        "share": busy / (ended - began) if ended > began else 0.0,
        "batches": len(done),
        "cases_per_s": cases / seconds if seconds else 0.0,
    }


def resolve_phase(port: int, headers: dict, args, seconds: float, name: str) -> dict:
    """Resolve for `seconds` (and at most --max-requests): as fast as --clients clients go
    (a closed loop, as bench/resolve_load.py drives it), or with --resolve-rate at that many
    requests a second spread over the clients."""
    workload, stop, budget = Workload(name), threading.Event(), Budget(args.max_requests)

    def client(index: int) -> None:
        connection = Client(port, headers)

        def step() -> bool:
            if not budget.take():
                stop.set()
                return True
            return workload.call(lambda: connection.request("GET", RESOLVE)) is not None

        if args.resolve_rate:
            per_client = args.resolve_rate / args.clients
            paced(per_client, stop, step, offset=index / args.resolve_rate)
        else:
            closed_loop(stop, step)
        connection.close()

    began = time.monotonic()
    threads = background([lambda i=i: client(i) for i in range(args.clients)])
    stop.wait(seconds)
    stop.set()
    elapsed = time.monotonic() - began
    for thread in threads:
        thread.join(timeout=30)
    figures = workload.figures(elapsed)
    crashed = [thread.error for thread in threads if thread.error]
    if crashed:
        figures["errors"] += len(crashed)
        figures["error_samples"] += crashed[:3]
    return figures


def telemetry_batches(metrics: list[int], size: int):
    """Bodies of telemetry batches: each observation new (its own idempotency key)."""
    rng = random.Random(7)
    languages = ["en", "de", "fr", "pt"]
    for n in itertools.count(1):
        now = dt.datetime.now(dt.UTC)
        items = [
            {
                "metric_id": metrics[i % len(metrics)],
                "value": round(rng.uniform(2, 14), 3),
                "time": (now - dt.timedelta(minutes=rng.randrange(7 * 24 * 60))).isoformat(),
                "segments": {
                    "language": rng.choice(languages),
                    "user_role": rng.choice(["customer", "partner"]),
                },
                "idempotency_key": f"mixed-{n}-{i}",
            }
            for i in range(size)
        ]
        yield json.dumps({"observations": items, "source": "bench-mixed"}).encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument(
        "--duration", type=float, default=80, help="measured seconds: 1/4 idle, 3/4 mixed"
    )
    parser.add_argument("--clients", type=int, default=16, help="resolve clients (both phases)")
    parser.add_argument(
        "--resolve-rate",
        type=float,
        default=300,
        help="resolves per second over the clients (0: as fast as they go, which measures "
        "throughput: latency is then clients / throughput)",
    )
    parser.add_argument("--workers", type=int, default=4, help="gunicorn workers (deploy/: 4)")
    parser.add_argument(
        "--threads", type=int, default=4, help="threads per gunicorn worker (deploy/: 4)"
    )
    parser.add_argument(
        "--hot-workers",
        type=int,
        default=0,
        help="a second gunicorn pool of this many workers (x --threads) for resolve and render "
        "only, as a proxy routing /api/v1/prompts/*/resolve|render would (0: one pool for all)",
    )
    parser.add_argument("--eval-threads", type=int, default=1, help="AIFACTORY_EVAL_THREADS")
    parser.add_argument(
        "--worker-nice",
        type=int,
        default=10,
        help="nice level of the worker and its scheduling group (deploy/'s unit: Nice=10)",
    )
    parser.add_argument("--render-rate", type=float, default=20, help="renders per second")
    parser.add_argument("--telemetry-rate", type=float, default=2, help="batches per second")
    parser.add_argument("--telemetry-batch", type=int, default=200, help="observations each")
    parser.add_argument("--runs-in-flight", type=int, default=2, help="evaluation runs at once")
    parser.add_argument("--page-rate", type=float, default=2, help="admin and scorecard pages/s")
    parser.add_argument("--max-requests", type=int, default=500_000, help="resolve bound/phase")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    exit_on_sigterm()

    database = os.environ.get("DATABASE_URL", DEFAULT_DB)
    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER)
    cache = os.environ.get("CACHE_URL", broker)
    check_services(database, broker, cache)
    var = ROOT / "var" / "bench-mixed"
    var.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(var / "mail", ignore_errors=True)  # the notifications of earlier runs
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "aifactory.settings.production",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(64),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DATABASE_URL": database,
        "CELERY_BROKER_URL": broker,
        "CACHE_URL": cache,
        "AIFACTORY_VAR_DIR": str(var),
        "AIFACTORY_SITE_URL": "https://127.0.0.1",
        # No mail server here: notifications go to files under the var folder.
        "DJANGO_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "PYTHONPATH": str(ROOT),
    }
    say(f"setup: {database.split('@')[-1]}, broker {broker}, cache {cache}, var {var}")
    for command in (
        ["migrate", "--noinput", "-v0"],
        ["flush", "--noinput", "-v0"],
        ["collectstatic", "--noinput", "-v0"],
    ):
        manage(env, *command)
    os.environ.update(env)
    import django

    django.setup()
    seeded = seed()

    port = free_port()
    hot_port = free_port() if args.hot_workers else port
    baseline_seconds = args.duration / 4
    mixed_seconds = args.duration - baseline_seconds
    python = Path(sys.executable)

    def healthy(port: int = port) -> bool:
        if not reachable("127.0.0.1", port):
            return False
        probe = Client(port, PROXY, timeout=5)
        try:
            return probe.request("GET", "/healthz")[0] == 200
        except (OSError, http.client.HTTPException):
            return False
        finally:
            probe.close()

    worker_log = var / "worker.log"
    with Children() as children:
        worker = [
            str(python),
            "-m",
            "celery",
            "-A",
            "aifactory",
            "worker",
            "--concurrency",
            "1",
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--hostname",
            f"bench-mixed-{os.getpid()}@%h",
        ]
        worker_process = children.start(
            "celery worker",
            worker,
            env={
                **env,
                "AIFACTORY_EVAL_THREADS": str(args.eval_threads),
                "AIFACTORY_EVAL_DEVICE": "cpu",
            },
            log=worker_log,
            ready=lambda: " ready." in worker_log.read_text(errors="replace"),
            nice=args.worker_nice,
            death_signal=signal.SIGQUIT,
        )

        def gunicorn(name: str, bind: int, workers: int):
            return children.start(
                name,
                [
                    str(python.with_name("gunicorn")),
                    "aifactory.wsgi",
                    "--bind",
                    f"127.0.0.1:{bind}",
                    "--workers",
                    str(workers),
                    "--threads",
                    str(args.threads),
                    "--timeout",
                    "120",
                ],
                env=env,
                log=var / f"{name.replace(' ', '-')}.log",
                ready=lambda: healthy(bind),
            )

        web_process = gunicorn("gunicorn", port, args.workers)
        hot_process = (
            gunicorn("gunicorn hot", hot_port, args.hot_workers) if args.hot_workers else None
        )
        say(
            f"gunicorn {args.workers} workers x {args.threads} threads on :{port}; worker "
            f"concurrency 1 x {args.eval_threads} ONNX threads, nice {args.worker_nice}"
            + (
                f"; resolve and render on a pool of {args.hot_workers} x {args.threads} on "
                f":{hot_port}"
                if args.hot_workers
                else ""
            )
        )

        app_headers = {**PROXY, "Authorization": f"Api-Key {seeded['app_key']}"}
        staff = login(port, "/admin/login/", *seeded["staff"])
        owner = login(port, "/accounts/login/", *seeded["owner"])
        admin_pages = [
            "/admin/",
            "/admin/approvals/approvalrequest/",
            f"/admin/approvals/approvalrequest/{seeded['approval']}/change/",
            "/admin/prompts/promptversion/",
            "/admin/evaluations/run/",
            "/admin/core/auditevent/",
        ]
        scorecard_pages = [
            "/scorecards/",
            f"/scorecards/{seeded['charter']}/",
            f"/scorecards/{seeded['charter']}/?window=90",
        ]
        # Bodies are built before measuring: the load generator shares the CPUs.
        render_bodies = itertools.cycle(
            [
                json.dumps({"label": "production", "variables": v}).encode()
                for v in seeded["variables"]
            ]
        )
        endless = telemetry_batches(seeded["metrics"], args.telemetry_batch)
        ahead = list(itertools.islice(endless, int(args.telemetry_rate * mixed_seconds) + 5))
        batches = itertools.chain(ahead, endless)  # one thread posts telemetry
        runs = Runs(port, seeded["ci_key"], seeded["outputs"], args.runs_in_flight, poll=1.0)
        runs.prepare(args.runs_in_flight + int(mixed_seconds / 3))
        workloads = {
            name: Workload(name) for name in ("render", "telemetry", "admin pages", "scorecards")
        }
        local = threading.local()

        def client(headers: dict, cookies: dict | None = None, to: int = port) -> Client:
            """One connection per thread, kind of caller and pool."""
            key = (tuple(headers.items()), tuple((cookies or {}).items()), to)
            if not hasattr(local, "clients"):
                local.clients = {}
            if key not in local.clients:
                local.clients[key] = Client(to, headers, cookies)
            return local.clients[key]

        def render() -> None:
            body = next(render_bodies)
            c = client(app_headers, to=hot_port)
            workloads["render"].call(
                lambda: c.request("POST", RENDER, body, {"Content-Type": "application/json"})
            )

        def telemetry() -> None:
            body = next(batches)
            c = client(app_headers)
            workloads["telemetry"].call(
                lambda: c.request("POST", TELEMETRY, body, {"Content-Type": "application/json"})
            )

        def pages(name: str, paths: list[str], cookies: dict):
            cycle = itertools.cycle(paths)

            def step() -> None:
                c = client(PROXY, cookies)
                path = next(cycle)
                workloads[name].call(lambda: c.request("GET", path))

            return step

        admin_step = pages("admin pages", admin_pages, staff)
        scorecard_step = pages("scorecards", scorecard_pages, owner)

        # Pre-flight: every kind of request once (a broken setup fails here, not in the
        # figures), one run scored to the end (the worker loads its ONNX session), and every
        # gunicorn worker warmed with resolves.
        say("pre-flight: every request once, one evaluation run, warm-up")
        for step in (render, telemetry, *[admin_step] * len(admin_pages)):
            step()
        for _ in scorecard_pages:
            scorecard_step()
        warm = Runs(port, seeded["ci_key"], seeded["outputs"], 1, poll=0.5)
        warm_client = Client(port, warm.headers)
        run_id = warm.start_one(warm_client)
        deadline = time.monotonic() + 120
        while run_id and warm.status(warm_client, run_id) not in FINISHED:
            if time.monotonic() > deadline:
                sys.exit(f"the warm-up run {run_id} did not finish in 120 s; see {worker_log}")
            time.sleep(0.5)
        warm_client.close()
        idle_worker = worker_activity([run_id], 0, time.time(), skip_first=True)
        problems = [
            f"{w.name}: {w.samples}"
            for w in (*workloads.values(), warm.start, warm.read)
            if w.errors
        ]
        if problems:
            sys.exit("pre-flight failed:\n" + "\n".join(problems))
        workloads = {name: Workload(name) for name in workloads}  # pre-flight does not count
        resolve_phase(hot_port, app_headers, args, 2, "warm-up")

        groups = {"web": web_process.pid, "worker": worker_process.pid}
        hot = [hot_process.pid] if hot_process else []

        def cpu_now() -> dict[str, float]:
            used = cpu_seconds([*groups.values(), *hot])
            return {
                **{name: used[pid] for name, pid in groups.items()},
                "web": used[web_process.pid] + sum(used[pid] for pid in hot),  # both pools
                "load generator": time.process_time(),
                "machine": used[0],
                "wall": time.monotonic(),
            }

        load_before = os.getloadavg()
        cpu = {"baseline": [cpu_now()]}
        say(f"baseline: resolve alone, {args.clients} clients, {baseline_seconds:.0f} s")
        idle = resolve_phase(hot_port, app_headers, args, baseline_seconds, "resolve (idle)")
        cpu["baseline"].append(cpu_now())

        say(f"mixed: resolve with the background load, {mixed_seconds:.0f} s")
        stop = threading.Event()
        per_render_thread = args.render_rate / 2
        background_began = time.monotonic()
        threads = background(
            [
                lambda: runs.loop(stop),
                lambda: paced(per_render_thread, stop, render),
                lambda: paced(per_render_thread, stop, render, offset=1 / args.render_rate),
                lambda: paced(args.telemetry_rate, stop, telemetry),
                lambda: paced(args.page_rate, stop, admin_step),
                lambda: paced(args.page_rate, stop, scorecard_step),
            ]
        )
        # Resolve is measured from the moment the first run is queued for the worker.
        deadline = time.monotonic() + 30
        while not runs.ids and time.monotonic() < deadline:
            time.sleep(0.05)
        began = time.time()
        cpu["mixed"] = [cpu_now()]
        mixed = resolve_phase(hot_port, app_headers, args, mixed_seconds, "resolve (mixed)")
        ended = time.time()
        cpu["mixed"].append(cpu_now())
        stop.set()
        background_seconds = time.monotonic() - background_began
        for thread in threads:
            thread.join(timeout=60)
        load_after = os.getloadavg()
        # Errors outside the workloads' requests: a load thread that died, a server or worker
        # that stopped (its runs would only look slow), a run that could not be cancelled.
        problems = [f"load thread died: {thread.error}" for thread in threads if thread.error]
        problems += [
            f"load thread {thread.name} still busy 60 s after the phase"
            for thread in threads
            if thread.is_alive()
        ]
        problems += [f"{what} stopped during the benchmark" for what in children.exited()]
        activity = worker_activity(runs.ids, began, ended)
        share = activity["share"]
        canceller = Client(port, runs.headers)
        for run_id in runs.pending:  # unfinished runs are not measured: leave them cancelled
            try:
                status, body = canceller.request(
                    "POST", f"{RUNS}{run_id}/cancel/", b"{}", {"Content-Type": "application/json"}
                )
            except (OSError, http.client.HTTPException) as exc:
                problems.append(f"cancelling run {run_id}: {type(exc).__name__}: {exc}")
                continue
            # 409: it finished in the meantime.
            if status not in (200, 409):
                problems.append(f"cancelling run {run_id}: HTTP {status}: {body[:300]!r}")
        canceller.close()
        say("stopping gunicorn and the worker")

    rows = {
        "resolve (idle)": idle,
        "resolve (mixed)": mixed,
        **{name: w.figures(background_seconds) for name, w in workloads.items()},
        "run start": runs.start.figures(background_seconds),
        "run read": runs.read.figures(background_seconds),
    }
    resolve_asked = f"{args.resolve_rate:g}/s" if args.resolve_rate else f"{args.clients} clients"
    asked = {
        "resolve (idle)": resolve_asked,
        "resolve (mixed)": resolve_asked,
        "render": f"{args.render_rate:g}/s",
        "telemetry": f"{args.telemetry_rate:g}/s x {args.telemetry_batch}",
        "admin pages": f"{args.page_rate:g}/s",
        "scorecards": f"{args.page_rate:g}/s",
        "run start": f"{args.runs_in_flight} in flight",
        "run read": "each 1 s",
    }
    cpus = os.cpu_count()
    say(
        f"\n{cpus} CPUs shared by the server, the worker, PostgreSQL, Redis and this load "
        f"generator; gunicorn {args.workers}x{args.threads}, aifactory.settings.production; "
        f"worker 1 x {args.eval_threads} ONNX threads (CPU), nice {args.worker_nice}"
    )
    say(
        f"load average (1/5/15 min): before the baseline {load_before[0]:.2f}/"
        f"{load_before[1]:.2f}/{load_before[2]:.2f}, after the mixed phase "
        f"{load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}"
    )
    say(
        f"\n{'workload':<17}{'asked':>14}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}"
        f"{'requests':>10}{'errors':>8}"
    )
    for name, r in rows.items():
        say(
            f"{name:<17}{asked[name]:>14}{r['rps']:>9.1f}"
            f"{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}{r['requests']:>10}{r['errors']:>8}"
        )
    for name, r in rows.items():
        for sample in r["error_samples"]:
            say(f"  {name} error: {sample}")
        if r["errors"] and not r["error_samples"]:
            say(f"  {name} statuses: {r['statuses']}")
    for problem in problems:
        say(f"  error: {problem}")

    cores = {}
    for phase, (start, end) in cpu.items():
        wall = end["wall"] - start["wall"]
        cores[phase] = {
            name: (end[name] - start[name]) / wall for name in ("web", "worker", "load generator")
        }
        cores[phase]["rest"] = (end["machine"] - start["machine"]) / wall - sum(
            cores[phase].values()
        )
    say(
        f"\nCPU in use, in cores of {cpus}: {'web':>6}{'worker':>8}{'load gen':>10}"
        f"{'rest (PostgreSQL, Redis, other users)':>39}"
    )
    for phase, c in cores.items():
        say(
            f"  {phase:<27}{c['web']:>6.2f}{c['worker']:>8.2f}{c['load generator']:>10.2f}"
            f"{c['rest']:>39.2f}"
        )
    say(
        f"web CPU per resolve on the idle server: "
        f"{cores['baseline']['web'] / idle['rps'] * 1000 if idle['rps'] else 0:.2f} ms"
    )

    ratios = {
        "throughput": mixed["rps"] / idle["rps"] if idle["rps"] else 0.0,
        "p50": mixed["p50_ms"] / idle["p50_ms"] if idle["p50_ms"] else 0.0,
        "p99": mixed["p99_ms"] / idle["p99_ms"] if idle["p99_ms"] else 0.0,
    }
    cases = len(seeded["outputs"])
    say(
        f"\nresolve under mixed load / idle: throughput {ratios['throughput']:.2f}x, "
        f"p50 {ratios['p50']:.2f}x, p99 {ratios['p99']:.2f}x"
    )
    say(
        f"worker: had a batch to score {share:.0%} of the mixed phase, using "
        f"{cores['mixed']['worker']:.2f} cores; scoring speed {activity['cases_per_s']:.0f} "
        f"cases/s ({activity['batches']} batches finished in the phase, {runs.completed} runs "
        f"of {cases} cases) against {idle_worker['cases_per_s']:.0f} cases/s idle"
    )
    errors = sum(r["errors"] for r in rows.values()) + len(problems)
    met = mixed["p99_ms"] < TARGET_P99_MS and share >= MIN_SCORING_SHARE
    verdict = "PASS" if met and not errors else "MISS"
    say(
        f"target: zero errors ({errors}), resolve p99 < {TARGET_P99_MS:.0f} ms while the "
        f"worker scores (p99 {mixed['p99_ms']:.1f} ms, scoring {share:.0%} of the phase, "
        f"at least {MIN_SCORING_SHARE:.0%} needed): {verdict}"
    )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "config": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "cpus": cpus,
                    "load_average": {"before": load_before, "after": load_after},
                    "cpu_cores": cores,
                    "workloads": rows,
                    "resolve_ratios": ratios,
                    "worker": {"mixed": activity, "idle": idle_worker},
                    "runs_completed": runs.completed,
                    "errors": errors,
                    "other_errors": problems,
                    "target_p99_ms": TARGET_P99_MS,
                    "verdict": verdict,
                },
                indent=2,
            )
        )
    return 1 if errors else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the children were stopped on the way out
        print("interrupted", file=sys.stderr)
        sys.exit(130)
