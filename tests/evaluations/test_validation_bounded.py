"""Uploaded models are untrusted input: validation runs bounded in a child process, once.

The hostile models are built here with onnx's helpers: a ~1 KB graph whose `Loop` never ends,
and one that asks for gigabytes at run time (its shape is computed, so no static check sees
it). Each is refused within its limit with the reason, and the worker goes on serving."""

import time

import numpy as np
import pytest
from celery.exceptions import SoftTimeLimitExceeded
from django.utils import timezone
from onnx import TensorProto, helper, numpy_helper

from aifactory.celery import app as celery_app
from apps.evaluations.choices import ArtifactStatus
from apps.evaluations.models import ModelArtifact, RunBatch
from apps.evaluations.onnx import builder, sandbox
from apps.evaluations.services import artifacts
from tests.evaluations.test_artifact_validation import bag_of_words

pytestmark = pytest.mark.django_db

TOKENIZER = builder.default_source_dir() / builder.TOKENIZER_FILE


def _hostile(extra_nodes, extra_initializers, extra_output: str):
    """A tiny text encoder (the mean token id, spread over 8 dimensions) whose embedding also
    adds `extra_output` (a float scalar) times zero: no weights, so the file stays small."""
    nodes = [
        helper.make_node("Cast", ["input_ids"], ["ids"], to=TensorProto.FLOAT),
        helper.make_node("ReduceMean", ["ids"], ["mean"], axes=[1], keepdims=1),
        helper.make_node("Mul", ["mean", "spread"], ["spread_mean"]),
        helper.make_node("Identity", ["attention_mask"], ["attention_mask_used"]),
        *extra_nodes,
        helper.make_node("Mul", [extra_output, "zero"], ["nothing"]),
        helper.make_node("Add", ["spread_mean", "nothing"], ["sentence_embedding"]),
    ]
    inputs = [
        helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "seq"])
        for name in ("input_ids", "attention_mask")
    ]
    outputs = [
        helper.make_tensor_value_info("sentence_embedding", TensorProto.FLOAT, ["batch", 8]),
        helper.make_tensor_value_info("attention_mask_used", TensorProto.INT64, None),
    ]
    initializers = [
        numpy_helper.from_array(np.array(0.0, dtype=np.float32), "zero"),
        numpy_helper.from_array(np.linspace(0.5, 1.5, 8, dtype=np.float32), "spread"),
        *extra_initializers,
    ]
    graph = helper.make_graph(nodes, "hostile", inputs, outputs, initializer=initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 10
    return model


def endless_loop():
    """A Loop with a trip count of 2^62 and a body that does nothing (under 2 KB)."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Identity", ["v_in"], ["v_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("v_out", TensorProto.FLOAT, []),
        ],
    )
    return _hostile(
        [helper.make_node("Loop", ["trips", "yes", "zero"], ["looped"], body=body)],
        [
            numpy_helper.from_array(np.array(2**62, dtype=np.int64), "trips"),
            numpy_helper.from_array(np.array(True), "yes"),
        ],
        "looped",
    )


def memory_hog():
    """ConstantOfShape of [50,000 + batch, 50,000] floats (10 GB), computed at run time."""
    return _hostile(
        [
            helper.make_node("Shape", ["input_ids"], ["ids_shape"]),
            helper.make_node("Mul", ["ids_shape", "keep_batch"], ["batch_only"]),
            helper.make_node("Add", ["batch_only", "huge"], ["big_shape"]),
            helper.make_node(
                "ConstantOfShape",
                ["big_shape"],
                ["big"],
                value=numpy_helper.from_array(np.array([1.0], dtype=np.float32)),
            ),
            helper.make_node("ReduceSum", ["big"], ["total"], keepdims=0),
        ],
        [
            numpy_helper.from_array(np.array([1, 0], dtype=np.int64), "keep_batch"),
            numpy_helper.from_array(np.array([50_000, 50_000], dtype=np.int64), "huge"),
        ],
        "total",
    )


def _artifact(tmp_path, settings, model, slug, owner):
    settings.MEDIA_ROOT = str(tmp_path)
    folder = tmp_path / "models" / slug
    folder.mkdir(parents=True)
    (folder / "model.onnx").write_bytes(model.SerializeToString())
    (folder / "tokenizer.json").write_bytes(TOKENIZER.read_bytes())
    return ModelArtifact.objects.create(
        name=slug,
        slug=slug,
        task="sentence_embedding",
        status=ArtifactStatus.PENDING,
        storage_dir=f"models/{slug}",
        sha256="0" * 64,
        max_seq_length=128,
        owner=owner,
    )


@pytest.fixture
def tight(settings):
    settings.EVALUATIONS_VALIDATE_TIMEOUT_S = 3
    settings.EVALUATIONS_VALIDATE_MEMORY_MB = 512


def _roomy(settings):
    """Time enough for a fresh child on a busy machine (importing onnx alone takes seconds)."""
    settings.EVALUATIONS_VALIDATE_TIMEOUT_S = 60


def test_the_crafted_models_are_small():
    assert len(endless_loop().SerializeToString()) < 2048


def test_an_endless_loop_is_refused_within_the_time_limit(tmp_path, settings, tight, owner):
    artifact = _artifact(tmp_path, settings, endless_loop(), "loop", owner)
    started = time.monotonic()
    assert artifacts.artifact_validate(artifact.pk) == ArtifactStatus.INVALID
    assert time.monotonic() - started < 3 + 5
    artifact.refresh_from_db()
    (problem,) = artifact.validation["problems"]
    assert problem.startswith("Validation exceeded the 3 s time limit")
    # The worker goes on serving: a good model validates right after.
    _roomy(settings)
    good = _artifact(tmp_path, settings, bag_of_words(), "good", owner)
    assert artifacts.artifact_validate(good.pk) == ArtifactStatus.VALID


def test_a_model_that_allocates_too_much_is_refused_with_the_limit(
    tmp_path, settings, tight, owner
):
    settings.EVALUATIONS_VALIDATE_TIMEOUT_S = 30  # the memory limit, not the clock, stops it
    artifact = _artifact(tmp_path, settings, memory_hog(), "hog", owner)
    started = time.monotonic()
    assert artifacts.artifact_validate(artifact.pk) == ArtifactStatus.INVALID
    assert time.monotonic() - started < 30
    artifact.refresh_from_db()
    problem = artifact.validation["problems"][0]
    assert problem.startswith("Validation exceeded the 512 MB memory limit"), problem
    good = _artifact(tmp_path, settings, bag_of_words(), "good", owner)
    assert artifacts.artifact_validate(good.pk) == ArtifactStatus.VALID


def test_a_redelivered_message_changes_nothing(tmp_path, settings, tight, monkeypatch, owner):
    from apps.evaluations.tasks import artifact_validate_task

    artifact = _artifact(tmp_path, settings, endless_loop(), "loop", owner)
    assert artifact_validate_task.apply(args=[artifact.pk]).get() == ArtifactStatus.INVALID
    calls = []
    monkeypatch.setattr(sandbox, "inspect_bounded", lambda *a, **k: calls.append(a))
    assert artifact_validate_task.apply(args=[artifact.pk]).get() == "skipped"
    assert calls == []
    artifact.refresh_from_db()
    assert artifact.status == ArtifactStatus.INVALID and artifact.validation_attempts == 1


def test_a_message_for_a_model_another_worker_is_validating_does_nothing(
    tmp_path, settings, tight, monkeypatch, owner
):
    artifact = _artifact(tmp_path, settings, bag_of_words(), "busy", owner)
    ModelArtifact.objects.filter(pk=artifact.pk).update(
        validation_started_at=timezone.now(), validation_attempts=1
    )
    calls = []
    monkeypatch.setattr(sandbox, "inspect_bounded", lambda *a, **k: calls.append(a))
    assert artifacts.artifact_validate(artifact.pk) == "busy"
    assert calls == []


def test_a_claim_left_by_a_worker_that_died_is_taken_again(tmp_path, settings, owner):
    _roomy(settings)
    artifact = _artifact(tmp_path, settings, bag_of_words(), "orphan", owner)
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    ModelArtifact.objects.filter(pk=artifact.pk).update(
        validation_started_at=long_ago, validation_attempts=1
    )
    assert artifacts.artifact_validate(artifact.pk) == ArtifactStatus.VALID
    artifact.refresh_from_db()
    assert artifact.validation_attempts == 2


def test_a_model_whose_worker_died_every_time_is_refused_not_redelivered_forever(
    tmp_path, settings, tight, owner
):
    artifact = _artifact(tmp_path, settings, bag_of_words(), "killer", owner)
    long_ago = timezone.now() - timezone.timedelta(hours=1)
    ModelArtifact.objects.filter(pk=artifact.pk).update(
        validation_started_at=long_ago, validation_attempts=artifacts.VALIDATION_MAX_ATTEMPTS
    )
    assert artifacts.artifact_validate(artifact.pk) == ArtifactStatus.INVALID
    artifact.refresh_from_db()
    assert "did not finish in 2 attempts" in artifact.validation["problems"][0]


def test_the_child_sees_none_of_the_servers_secrets(monkeypatch):
    monkeypatch.setenv("DJANGO_SECRET_KEY", "s3cret")
    monkeypatch.setenv("DATABASE_URL", "postgres://u:p@db/x")
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    env = sandbox._child_env()
    assert not {"DJANGO_SECRET_KEY", "DATABASE_URL", "HTTPS_PROXY"} & set(env)


def test_the_child_cannot_open_a_socket():
    import subprocess
    import sys

    probe = (
        "from apps.evaluations.onnx.sandbox import _block_network\n"
        "_block_network()\n"
        "import socket, urllib.request\n"
        "for call in (lambda: socket.create_connection(('127.0.0.1', 9)),\n"
        "             lambda: urllib.request.urlopen('http://example.com', timeout=1)):\n"
        "    try:\n"
        "        call()\n"
        "    except OSError as exc:\n"
        "        print(exc)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=sandbox.ROOT,
        env=sandbox._child_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.stdout.count("network access is disabled") == 2, done.stdout + done.stderr


def test_every_task_has_a_soft_and_a_hard_time_limit():
    import apps.approvals.tasks  # noqa: F401
    import apps.charters.tasks  # noqa: F401
    import apps.evaluations.tasks  # noqa: F401
    import apps.gateway.tasks  # noqa: F401
    import apps.prompts.tasks  # noqa: F401
    import apps.scorecards.tasks  # noqa: F401

    ours = {name: task for name, task in celery_app.tasks.items() if name.startswith("apps.")}
    assert len(ours) >= 13
    for name, task in ours.items():
        assert task.soft_time_limit and task.time_limit, name
        assert task.soft_time_limit < task.time_limit, name


def test_a_batch_past_its_soft_limit_is_handed_back(monkeypatch, owner, suite, support_prompt):
    from apps.evaluations import services
    from apps.evaluations.services import execution
    from apps.evaluations.tasks import evaluation_batch_run

    run = services.run_start(
        actor=owner,
        suite=suite,
        prompt_version=support_prompt.versions.get(number=2),
        output_source="posted",
        batch_size=50,
    )
    batch = run.batches.first()

    def slow(*args, **kwargs):
        raise SoftTimeLimitExceeded()

    monkeypatch.setattr(execution, "score_cases", slow)
    RunBatch.objects.filter(pk=batch.pk).update(status="pending")
    from apps.evaluations.choices import RunStatus
    from apps.evaluations.models import Run

    Run.objects.filter(pk=run.pk).update(status=RunStatus.QUEUED)
    with pytest.raises(Exception):  # noqa: B017  (eager retry re-raises)
        evaluation_batch_run.apply(args=[batch.pk], throw=True)
    batch.refresh_from_db()
    assert batch.status == "pending"
    assert "SoftTimeLimitExceeded" in batch.error
