"""Finalization of a 100,000-result run with four segment keys, next to the raw read it needs.

Seeds a run of --cases results (three metrics, segment keys language / geography / user_role /
task_type) and a baseline run over the same cases, then times `run_finalize`: aggregates per
metric overall and per segment value, histograms, worst cases, the paired bootstrap comparison
with the baseline, regressed segments and the gate. The raw baseline is a plain
`SELECT metrics, segments` of the same rows through the same connection.

    .venv/bin/python bench/finalize_100k.py [--cases 100000]

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/aifactory_bench_eval).
Target (issue #4): under 10 seconds on PostgreSQL.
"""

from __future__ import annotations

import argparse
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

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aifactory_bench_eval"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=100_000)
    args = parser.parse_args()
    database = os.environ.get("DATABASE_URL", DEFAULT_DB)
    if database.startswith("postgres"):
        ensure_database(database)
    var = Path(tempfile.mkdtemp(prefix="aifactory-bench-final-"))
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "AIFACTORY_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
    }
    os.environ.update(env)
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput", "-v0"], env=env, cwd=ROOT, check=True
    )
    subprocess.run(
        [sys.executable, "manage.py", "flush", "--noinput", "-v0"], env=env, cwd=ROOT, check=True
    )

    import django

    django.setup()
    from django.db import connection, transaction

    from apps.evaluations import services
    from apps.evaluations.models import Case, CaseResult, Dataset, DatasetVersion, Run, RunBatch
    from apps.evaluations.services import runs as run_services
    from apps.prompts.models import Prompt
    from apps.workspace.demo import demo_setup

    demo_setup(evaluations=False)
    prompt = Prompt.objects.get(slug="support-reply-draft")
    owner = prompt.owner
    rng = random.Random(5)
    seeded = time.perf_counter()
    with transaction.atomic():
        dataset = Dataset.objects.create(
            slug="bench", name="bench", charter=prompt.charter, owner=owner
        )
        version = DatasetVersion.objects.create(
            dataset=dataset,
            number=1,
            case_count=args.cases,
            created_by=owner,
            segment_keys=["geography", "language", "task_type", "user_role"],
        )
        Case.objects.bulk_create(
            (
                Case(
                    dataset_version=version,
                    position=i + 1,
                    external_id=f"c{i}",
                    variables={"context": "x", "message": "y"},
                    expected="e",
                    segments={
                        "language": rng.choice(["en", "de", "fr", "es", "it", "nl"]),
                        "geography": rng.choice(["uk", "dach", "france", "iberia", "benelux"]),
                        "user_role": rng.choice(["customer", "agent", "partner"]),
                        "task_type": rng.choice(["drafting", "summarization", "routing"]),
                    },
                )
                for i in range(args.cases)
            ),
            batch_size=5000,
        )
    suite = services.suite_create(
        actor=owner,
        charter=prompt.charter,
        fields={
            "name": "bench",
            "dataset_version": version,
            "scorers": [
                {"scorer": "token_f1"},
                {"scorer": "exact_match"},
                {"scorer": "length", "params": {"max_words": 80}},
            ],
        },
    )
    for fields in (
        {"metric": "token_f1", "aggregate": "mean", "comparator": ">=", "value": 0.5},
        {
            "metric": "token_f1",
            "aggregate": "worst_segment",
            "comparator": ">=",
            "value": 0.4,
            "min_cases": 100,
        },
        {"metric": "exact_match", "aggregate": "pass_rate", "comparator": ">=", "value": 0.3},
    ):
        services.threshold_set(actor=owner, suite=suite, fields=fields)
    case_ids = list(
        Case.objects.filter(dataset_version=version)
        .order_by("position")
        .values_list("pk", flat=True)
    )

    def seeded_run(shift: float, baseline=None) -> Run:
        with transaction.atomic():
            run = Run.objects.create(
                suite=suite,
                dataset_version=version,
                prompt_version=prompt.versions.get(number=1),
                output_source="posted",
                status="finalizing",
                total_cases=args.cases,
                done_cases=args.cases,
                total_batches=1,
                done_batches=1,
                baseline=baseline,
                created_by=owner,
            )
            RunBatch.objects.create(
                run=run, index=0, first_position=1, last_position=args.cases, status="done"
            )
            CaseResult.objects.bulk_create(
                (
                    CaseResult(
                        run=run,
                        case_id=pk,
                        metrics={
                            "token_f1": min(1.0, max(0.0, rng.gauss(0.6 + shift, 0.2))),
                            "exact_match": float(rng.random() < 0.4 + shift),
                            "length_ok": 1.0,
                            "length_words": float(rng.randint(5, 60)),
                        },
                        passed=rng.random() < 0.6,
                    )
                    for pk in case_ids
                ),
                batch_size=5000,
            )
        return run

    baseline = seeded_run(0.0)
    run_services.run_finalize(baseline.pk)
    candidate = seeded_run(0.03, baseline=baseline)
    print(
        f"seeded 2 x {args.cases} results in {time.perf_counter() - seeded:.1f} s "
        f"({connection.vendor})"
    )

    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.metrics, c.segments FROM evaluations_caseresult r "
            "JOIN evaluations_case c ON c.id = r.case_id WHERE r.run_id = %s",
            [candidate.pk],
        )
        rows = cursor.fetchall()
    raw = time.perf_counter() - started

    started = time.perf_counter()
    outcome = run_services.run_finalize(candidate.pk)
    final = time.perf_counter() - started
    candidate.refresh_from_db()
    segments = sum(len(v) for v in candidate.summary["segments"]["token_f1"].values())
    print(f"raw read of {len(rows)} results + segments: {raw:.2f} s")
    print(
        f"finalize ({outcome}): {final:.2f} s for {args.cases} results, {segments} segment values, "
        f"verdict {candidate.verdict}, token_f1 delta {candidate.comparison['metrics']['token_f1']['delta']:+.3f} "
        f"[{candidate.comparison['metrics']['token_f1']['low']:+.3f}, {candidate.comparison['metrics']['token_f1']['high']:+.3f}]"
    )
    print(
        f"target under 10 s: {'met' if final < 10 else 'NOT met'} ({final / raw:.1f}x the raw read)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
