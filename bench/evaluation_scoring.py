"""End-to-end evaluation scoring against the bare ONNX Runtime loop, measured in one script.

A run of --cases cases (output, expected answer, two context passages each) is scored with
semantic similarity and grounded coverage on the default encoder: posted through the API's
service, batched onto the broker, scored by a real `celery worker` process, written to the
database and finalized. The same model's bare loop (`Encoder.encode`: tokenize, sort by
length, pad per batch, `session.run`) then embeds exactly the distinct texts the scorers
embed, in this process. Both figures are texts per second over the same distinct texts.
With --int8 the int8 variant is derived (its agreement measured) and run end to end too.

    .venv/bin/python bench/evaluation_scoring.py [--cases 600] [--batch-size 250] [--int8]

Environment: DATABASE_URL (default postgres://postgres@127.0.0.1:5432/aifactory_bench_eval)
and CELERY_BROKER_URL (default redis://127.0.0.1:6379/5). Targets (issue #4, two cores):
end to end >= 0.9x the bare fp32 loop; int8 end to end >= 1.4x the bare fp32 loop with
agreement >= 0.98.
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

from bench.resolve_load import ensure_database, reachable  # noqa: E402

DEFAULT_DB = "postgres://postgres@127.0.0.1:5432/aifactory_bench_eval"
DEFAULT_BROKER = "redis://127.0.0.1:6379/5"

SUBJECTS = [
    "The refund",
    "Your parcel",
    "The invoice",
    "Your account",
    "The warranty",
    "The subscription",
    "The replacement",
    "Your password reset",
    "The delivery slot",
    "The loyalty voucher",
    "The price match",
    "The store pickup",
]
VERBS = [
    "is processed within",
    "arrives in",
    "is available for",
    "stays valid for",
    "can be requested within",
    "is confirmed after",
    "is extended by",
    "expires after",
]
SPANS = [
    "two working days",
    "five working days",
    "30 days",
    "one hour",
    "two years",
    "the end of the billing period",
    "14 days",
    "24 hours",
    "three months",
    "90 days",
]
EXTRAS = [
    "once we receive the item",
    "if you keep the receipt",
    "for orders placed before 3 pm",
    "after we verify your identity",
    "unless the item was damaged by accident",
    "and you will get an e-mail confirmation",
    "when you sign in to your account",
    "provided the tracking number is valid",
    "for customers in the EU",
    "according to our published policy",
]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(SUBJECTS)} {rng.choice(VERBS)} {rng.choice(SPANS)} {rng.choice(EXTRAS)}."


def make_rows(cases: int, seed: int = 3) -> list[dict]:
    """Cases with two contexts drawn from a shared pool (as retrievers return), distinct outputs."""
    rng = random.Random(seed)
    pool = [" ".join(sentence(rng) for _ in range(3)) for _ in range(max(40, cases // 4))]
    rows = []
    for i in range(cases):
        contexts = rng.sample(pool, 2)
        expected = " ".join(sentence(rng) for _ in range(2))
        output = " ".join(sentence(rng) for _ in range(rng.randint(1, 3)))
        rows.append(
            {
                "id": f"b{i}",
                "variables": {"context": " ".join(contexts), "message": f"question {i}"},
                "expected": expected,
                "contexts": contexts,
                "language": rng.choice(["en", "de", "fr", "es"]),
                "user_role": rng.choice(["customer", "agent", "partner"]),
                "_output": output,
            }
        )
    return rows


class Recorder:
    """Stands in for the encoder to learn which texts the scorers embed."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, texts, batch_size: int = 32):
        import numpy as np

        self.texts.extend(t.strip() for t in texts)
        rows = np.random.default_rng(0).standard_normal((len(texts), 8)).astype("float32")
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def distinct_texts(rows, scorers) -> list[str]:
    from types import SimpleNamespace

    from apps.evaluations.scoring import (
        base,
        semantic,  # noqa: F401
    )

    recorder = Recorder()
    cases = [
        base.ScoringCase(r["id"], r["_output"], r["expected"], tuple(r["contexts"])) for r in rows
    ]
    for item in scorers:
        spec = base.get(item["scorer"])
        spec.score(
            cases, spec.validate(item.get("params") or {}), SimpleNamespace(encoder=recorder)
        )
    return list(dict.fromkeys(recorder.texts))


def bare_loop(model_dir: Path, texts: list[str], threads: int) -> float:
    """Texts per second of `Encoder.encode` over `texts` (best of two passes, after a warm-up)."""
    from apps.evaluations.onnx.encoder import Encoder

    encoder = Encoder(model_dir, device="cpu", intra_op_threads=threads)
    encoder.encode(["warm up the session"] * 4)
    best = float("inf")
    for _ in range(2):
        started = time.perf_counter()
        encoder.encode(texts)
        best = min(best, time.perf_counter() - started)
    return len(texts) / best


def start_worker(env, queue: str, log: Path) -> subprocess.Popen:
    command = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "aifactory",
        "worker",
        "--pool",
        "solo",
        "-Q",
        queue,
        "--loglevel",
        "INFO",
        "--without-gossip",
        "--without-mingle",
        "--hostname",
        f"{queue}-{log.stem}@%h",
    ]
    out = log.open("wb")
    process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 90
    while " ready." not in log.read_text(errors="replace"):
        if process.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"the worker did not start:\n{log.read_text(errors='replace')[-3000:]}")
        time.sleep(0.3)
    return process


def end_to_end(owner, suite, version, rows, queue: str) -> tuple[float, object]:
    """Seconds from posting the outputs to the finalized run, through broker and worker."""
    from django.db import transaction

    from apps.evaluations import services
    from apps.evaluations.models import Run

    started = time.time()
    with transaction.atomic():
        run = services.run_start(actor=owner, suite=suite, prompt_version=version, queue=queue)
        outputs = [{"id": r["id"], "output": r["_output"]} for r in rows]
        services.run_outputs_post(actor=owner, run=run, items=enumerate(outputs, 1), complete=True)
    while True:  # polled slowly so the poller takes no CPU from the worker; timed by the run
        run = Run.objects.get(pk=run.pk)
        if run.status in ("completed", "failed", "cancelled"):
            break
        time.sleep(0.5)
    elapsed = run.finished_at.timestamp() - started
    if run.status != "completed":
        sys.exit(f"run {run.pk} {run.status}: {run.error}")
    return elapsed, run


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--cases", type=int, default=600)
    parser.add_argument("--batch-size", type=int, default=250)
    parser.add_argument("--threads", type=int, default=0, help="ORT threads (default: all CPUs)")
    parser.add_argument("--int8", action="store_true", help="also derive and run the int8 variant")
    parser.add_argument(
        "--workers", type=int, default=1, help="worker processes (CPUs shared between them)"
    )
    args = parser.parse_args()

    database = os.environ.get("DATABASE_URL", DEFAULT_DB)
    broker = os.environ.get("CELERY_BROKER_URL", DEFAULT_BROKER)
    if database.startswith("postgres"):
        ensure_database(database)
    if broker.startswith("redis") and not reachable("127.0.0.1", 6379):
        sys.exit("Redis is not reachable; set CELERY_BROKER_URL.")
    var = Path(tempfile.mkdtemp(prefix="aifactory-bench-eval-"))
    queue = f"bench-{os.getpid()}"
    env = {
        **os.environ,
        "DATABASE_URL": database,
        "CELERY_BROKER_URL": broker,
        "AIFACTORY_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "bench.settings_bench",
        "AIFACTORY_EVAL_BATCH_SIZE": str(args.batch_size),
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
    from apps.evaluations import services
    from apps.evaluations.models import ModelArtifact
    from apps.evaluations.onnx.encoder import available_cpus
    from apps.evaluations.services.artifacts import artifact_quantize_execute
    from apps.prompts.models import Prompt
    from apps.workspace.demo import demo_setup

    threads = args.threads or available_cpus()
    demo_setup(evaluations=False)
    prompt = Prompt.objects.get(slug="support-reply-draft")
    owner = prompt.owner
    version = prompt.versions.get(number=2)
    artifact = services.artifact_register_default_pack()
    rows = make_rows(args.cases)
    warm_rows = make_rows(10, seed=99)
    import io
    import json

    def suite_for(slug, rows_, artifact_slug):
        dataset = services.dataset_create(
            actor=owner, name=slug, charter=prompt.charter, prompt=prompt
        )
        body = "".join(
            json.dumps({k: v for k, v in r.items() if k != "_output"}) + "\n" for r in rows_
        )
        services.dataset_version_upload(
            actor=owner, dataset=dataset, stream=io.BytesIO(body.encode()), filename="b.jsonl"
        )
        scorers = [
            {"scorer": "semantic_similarity", "artifact": artifact_slug},
            {"scorer": "grounded_coverage", "artifact": artifact_slug},
        ]
        return services.suite_create(
            actor=owner,
            charter=prompt.charter,
            fields={"name": slug, "dataset_version": dataset.latest_version, "scorers": scorers},
        ), scorers

    variants = [("fp32", artifact)]
    if args.int8:
        started = time.perf_counter()
        artifact_quantize_execute(artifact.pk, actor_id=owner.pk, floor=0.98)
        int8 = ModelArtifact.objects.filter(quantized_from=artifact).first()
        if int8 is None:
            artifact.refresh_from_db()
            sys.exit(f"int8 refused: {artifact.validation.get('quantization_refused')}")
        print(f"int8 derived in {time.perf_counter() - started:.1f} s: agreement {int8.agreement}")
        variants.append(("int8", int8))

    cpus = threads
    worker_env = {**env, "AIFACTORY_EVAL_THREADS": str(max(1, cpus // args.workers))}
    workers = [
        start_worker(worker_env, queue, var / f"worker-{i}.log") for i in range(args.workers)
    ]
    try:
        print(
            f"cases {args.cases}, batch size {args.batch_size}, {args.workers} worker(s) x "
            f"{max(1, threads // args.workers)} ORT threads, "
            f"database {database.split('@')[-1]}, broker {broker}"
        )
        texts = None
        bare = {}
        for name, model in variants:
            suite, scorers = suite_for(f"bench-{name}", rows, model.slug)
            warm, _ = suite_for(f"warm-{name}", warm_rows, model.slug)
            end_to_end(owner, warm, version, warm_rows, queue)  # loads the worker's session
            texts = texts or distinct_texts(rows, scorers)
            seconds, run = end_to_end(owner, suite, version, rows, queue)
            rate = len(texts) / seconds
            bare[name] = bare_loop(model.path, texts, threads)
            print(
                f"{name}: distinct texts {len(texts)}; bare loop {bare[name]:.1f} texts/s; "
                f"end to end {rate:.1f} texts/s ({seconds:.1f} s, run #{run.pk}, verdict "
                f"{run.verdict}); ratio to bare fp32 {rate / bare['fp32']:.2f}"
            )
            bare[f"{name}-e2e"] = rate
        ok = bare["fp32-e2e"] >= 0.9 * bare["fp32"]
        print(
            f"target end to end >= 0.9x bare fp32: {'met' if ok else 'NOT met'} "
            f"({bare['fp32-e2e'] / bare['fp32']:.2f}x)"
        )
        if args.int8:
            speed = bare["int8-e2e"] / bare["fp32"]
            agreement = variants[1][1].agreement["mean_cosine"]
            ok_int8 = speed >= 1.4 and agreement >= 0.98
            print(
                f"target int8 end to end >= 1.4x bare fp32, agreement >= 0.98: "
                f"{'met' if ok_int8 else 'NOT met'} ({speed:.2f}x, mean cosine {agreement:.4f})"
            )
    finally:
        for worker in workers:
            worker.terminate()
            worker.wait(30)
    return 0


if __name__ == "__main__":
    sys.exit(main())
