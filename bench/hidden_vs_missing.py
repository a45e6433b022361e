"""Does a hidden object answer like a missing one, in time as well as in status and body?

Builds a small workspace (Olivia's charter with a prompt, a dataset, a suite and a run, and
Oscar, who sees none of it) in a scratch SQLite database, then asks each detail endpoint of
the API, as Oscar, for Olivia's object (hidden) and for a slug or id that does not exist
(missing), alternating, and prints the median time, the queries and the status of each.

    .venv/bin/python bench/hidden_vs_missing.py [--rounds 300]

The two medians should be within noise of each other (a few percent), with equal queries.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rounds", type=int, default=300)
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="aifactory-hvm-")
    os.environ.update(
        DJANGO_SETTINGS_MODULE="aifactory.settings.base",
        AIFACTORY_VAR_DIR=scratch,
        CELERY_TASK_ALWAYS_EAGER="1",
    )
    os.environ.pop("DATABASE_URL", None)
    import logging

    import django

    django.setup()
    logging.disable(logging.WARNING)
    from django.core.management import call_command
    from rest_framework.test import APIClient

    call_command("migrate", verbosity=0)
    from django.conf import settings

    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    from apps.evaluations import services
    from tests import factories
    from tests.evaluations.fixtures import case_rows, jsonl
    from tests.prompts.factories import PromptFactory, version_fields

    owner = factories.business_owner("olivia")
    outsider = factories.outsider("oscar")
    charter = factories.CharterFactory(business_owner=owner, created_by=owner)
    prompt = PromptFactory(charter=charter, owner=owner, slug="support-reply")
    from apps.prompts import services as prompt_services

    prompt_services.version_create(actor=owner, prompt=prompt, fields=version_fields())
    dataset = services.dataset_create(actor=owner, name="Cases", slug="cases", charter=charter)
    services.dataset_version_upload(
        actor=owner, dataset=dataset, stream=jsonl(case_rows(8)), filename="c.jsonl"
    )
    dataset.refresh_from_db()
    suite = services.suite_create(
        actor=owner,
        charter=charter,
        slug="quality",
        fields={
            "name": "Quality",
            "dataset_version": dataset.latest_version,
            "scorers": [{"scorer": "exact_match"}],
        },
    )
    run = services.run_start(
        actor=owner, suite=suite, prompt_version=prompt.versions.first(), output_source="posted"
    )
    pairs = {
        "charter": (f"/api/v1/charters/{charter.slug}/", "/api/v1/charters/no-such-charter/"),
        "prompt": (f"/api/v1/prompts/{prompt.slug}/", "/api/v1/prompts/no-such-prompt/"),
        "dataset": (
            f"/api/v1/evaluations/datasets/{dataset.slug}/",
            "/api/v1/evaluations/datasets/no-such-dataset/",
        ),
        "suite": (
            f"/api/v1/evaluations/suites/{suite.slug}/",
            "/api/v1/evaluations/suites/no-such-suite/",
        ),
        "run": (f"/api/v1/evaluations/runs/{run.pk}/", "/api/v1/evaluations/runs/999999/"),
        "resolve": (
            f"/api/v1/prompts/{prompt.slug}/resolve?label=latest",
            "/api/v1/prompts/no-such-prompt/resolve?label=latest",
        ),
        "versions": (
            f"/api/v1/prompts/{prompt.slug}/versions/",
            "/api/v1/prompts/no-such-prompt/versions/",
        ),
        "web charter": (f"/charters/{charter.slug}/", "/charters/no-such-charter/"),
        "web prompt": (f"/prompts/{prompt.slug}/", "/prompts/no-such-prompt/"),
        "web version": (
            f"/prompts/{prompt.slug}/versions/1/",
            "/prompts/no-such-prompt/versions/1/",
        ),
        "web suite": (
            f"/evaluations/suites/{suite.slug}/",
            "/evaluations/suites/no-such-suite/",
        ),
        "web dataset": (
            f"/evaluations/datasets/{dataset.slug}/",
            "/evaluations/datasets/no-such-dataset/",
        ),
        "web run": (f"/evaluations/runs/{run.pk}/", "/evaluations/runs/999999/"),
    }
    client = APIClient()
    client.force_authenticate(outsider)
    client.force_login(outsider)
    for seconds in (0, 300):
        settings.HOT_CACHE_SECONDS = seconds
        print(f"\nhot-path cache {'on (per process)' if seconds else 'off (embedded default)'}")
        measure(client, pairs, args.rounds)
    return 0


def measure(client, pairs, rounds) -> None:
    import statistics

    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    print(f"{'endpoint':<12} {'hidden ms':>10} {'missing ms':>11} {'ratio':>6}  queries  status")
    for name, (hidden, missing) in pairs.items():
        for path in (hidden, missing):  # warm
            client.get(path)
        times = {hidden: [], missing: []}
        for _ in range(rounds):
            for path in (hidden, missing):
                started = time.perf_counter()
                client.get(path)
                times[path].append((time.perf_counter() - started) * 1000)
        queries, statuses = [], []
        for path in (hidden, missing):
            with CaptureQueriesContext(connection) as captured:
                statuses.append(client.get(path).status_code)
            queries.append(len(captured))
        h, m = statistics.median(times[hidden]), statistics.median(times[missing])
        print(
            f"{name:<12} {h:>10.2f} {m:>11.2f} {h / m:>6.2f}  {queries[0]:>3}/{queries[1]:<3}"
            f"  {statuses[0]}/{statuses[1]}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
