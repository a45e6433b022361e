"""Telemetry ingest and scorecard rendering on PostgreSQL, next to their raw baselines.

1. Posts --observations observations in batches of 10,000 through `POST /api/v1/telemetry`
   (Django's full request stack in process: API-key authentication, JSON parsing, per-item
   validation, idempotency check, bulk insert) and prints observations per second, next to
   PostgreSQL's COPY of the same rows (the raw floor of getting rows in).
2. Renders the charter's scorecard (five metrics, four segment keys, over the whole window)
   and prints the time and the number of queries, next to a bare `SELECT count(*), avg(value)`
   over the same rows.

    .venv/bin/python bench/telemetry_scorecard.py [--observations 1000000]

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/aifactory_bench_tel).
Targets (issue #6, two cores): ingest >= 20,000 observations/s; scorecard < 1 s, constant queries.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.resolve_load import ensure_database  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aifactory_bench_tel"
BATCH = 10_000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--observations", type=int, default=1_000_000)
    args = parser.parse_args()
    database = os.environ.get("DATABASE_URL", DEFAULT_DB)
    ensure_database(database)
    var = Path(tempfile.mkdtemp(prefix="aifactory-bench-tel-"))
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "AIFACTORY_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
    }
    os.environ.update(env)
    for command in (["migrate", "--noinput", "-v0"], ["flush", "--noinput", "-v0"]):
        subprocess.run([sys.executable, "manage.py", *command], env=env, cwd=ROOT, check=True)

    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db import connection, reset_queries
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from apps.charters.models import Charter
    from apps.charters.services import charter_share
    from apps.core import groups
    from apps.core.services import api_key_create
    from apps.scorecards.selectors import scorecard
    from apps.workspace.demo import demo_setup

    demo_setup(evaluations=False)
    charter = Charter.objects.get(slug="support-reply-drafting")
    from apps.scorecards.models import Observation

    Observation.objects.filter(charter=charter).delete()
    bot, _ = get_user_model().objects.get_or_create(username="bench-telemetry")
    bot.groups.add(Group.objects.get(name=groups.INTEGRATIONS))
    charter_share(actor=charter.business_owner, charter=charter, user=bot, access="view")
    _, key = api_key_create(user=bot, name="bench")
    metrics = list(charter.metrics.values_list("pk", flat=True))
    rng = random.Random(1)
    now = timezone.now()
    languages = ["en", "de", "fr", "pt"]

    def batch(start: int) -> bytes:
        items = []
        for i in range(start, min(start + BATCH, args.observations)):
            items.append(
                {
                    "metric_id": metrics[i % len(metrics)],
                    "value": round(rng.uniform(2, 14), 3),
                    "time": (
                        now - __import__("datetime").timedelta(minutes=i % 129_600)
                    ).isoformat(),
                    "segments": {
                        "language": languages[i % 4],
                        "user_role": "customer" if i % 3 else "partner",
                    },
                    "idempotency_key": f"b{i}",
                }
            )
        return json.dumps({"observations": items}).encode()

    bodies = [batch(s) for s in range(0, args.observations, BATCH)]
    client = Client(HTTP_HOST="127.0.0.1")
    started = time.perf_counter()
    for body in bodies:
        response = client.post(
            "/api/v1/telemetry",
            body,
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Api-Key {key}",
        )
        if response.status_code != 200:
            sys.exit(f"ingest failed: {response.status_code} {response.content[:500]!r}")
    ingest = time.perf_counter() - started
    stored = Observation.objects.filter(charter=charter).count()
    print(
        f"ingest via the API: {stored} observations in {ingest:.1f} s = {stored / ingest:,.0f} obs/s "
        f"({len(bodies)} requests of {BATCH})"
    )

    # Raw floor: COPY the same rows into a scratch table of the same shape.
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TEMP TABLE copy_floor (LIKE scorecards_observation INCLUDING DEFAULTS)"
        )
        rows = io.StringIO()
        for i in range(args.observations):
            rows.write(
                f"{i + 1}\t{charter.pk}\t{metrics[i % len(metrics)]}\t{rng.uniform(2, 14):.3f}\t{now.isoformat()}\t"
                f'{{"language": "{languages[i % 4]}"}}\tbench\tc{i}\t{now.isoformat()}\n'
            )
        rows.seek(0)
        started = time.perf_counter()
        with cursor.cursor.copy(
            "COPY copy_floor (id, charter_id, metric_id, value, observed_at, segments, source, idempotency_key, created_at) FROM STDIN"
        ) as copy:
            while data := rows.read(1 << 20):
                copy.write(data)
        raw = time.perf_counter() - started
    print(
        f"raw COPY floor: {args.observations / raw:,.0f} rows/s; the API reaches "
        f"{(stored / ingest) / (args.observations / raw):.0%} of it"
    )
    print(f"target >= 20,000 obs/s: {'met' if stored / ingest >= 20_000 else 'NOT met'}")

    card = scorecard(charter, window_days=90)  # warm the connection and the caches
    reset_queries()
    timings = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as queries:
            started = time.perf_counter()
            card = scorecard(charter, window_days=90)
            timings.append(time.perf_counter() - started)
    with connection.cursor() as cursor:
        started = time.perf_counter()
        cursor.execute(
            "SELECT count(*), avg(value) FROM scorecards_observation WHERE charter_id = %s",
            [charter.pk],
        )
        bare = time.perf_counter() - started
    best = min(timings)
    print(
        f"scorecard over {stored} observations (90 days, {len(card['metrics'])} metrics): {best:.2f} s, "
        f"{len(queries)} queries; bare count+avg: {bare:.2f} s"
    )
    print(f"target < 1 s: {'met' if best < 1 else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
