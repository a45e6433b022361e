"""Database fixtures for evaluation tests: media storage, the default encoder, a prompt with
two versions, a dataset of support cases, a suite with thresholds, and helpers that run a
posted-output evaluation to its verdict."""

from __future__ import annotations

import io
import json
import shutil

import pytest

from apps.evaluations import services
from apps.evaluations.onnx import builder
from apps.evaluations.services.artifacts import MODELS_DIR
from apps.prompts import services as prompt_services
from tests.prompts.factories import PromptFactory, version_fields


@pytest.fixture(scope="session")
def default_pack_build(tmp_path_factory):
    """The default encoder built once per session, in the layout the default pack uses."""
    root = tmp_path_factory.mktemp("media-default")
    builder.build_default_encoder(root / MODELS_DIR / "default" / builder.DEFAULT_NAME)
    return root


@pytest.fixture
def media(settings, tmp_path):
    """A private MEDIA_ROOT for uploads."""
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.MEDIA_ROOT.mkdir()
    return settings.MEDIA_ROOT


@pytest.fixture
def default_encoder(db, media, default_pack_build):
    """The all-MiniLM-L6-v2 artifact, registered and valid."""
    shutil.copytree(default_pack_build / MODELS_DIR, media / MODELS_DIR, dirs_exist_ok=True)
    return services.artifact_register_default_pack()


@pytest.fixture
def support_prompt(charter, owner, compliance):
    """Olivia's support prompt: v1 approved and on production, v2 approved (the candidate)."""
    charter.status = "pilot"
    charter.save(update_fields=["status"])
    prompt = PromptFactory(charter=charter, owner=owner, slug="support-reply", name="Support reply")
    for temperature in (0.3, 0.1):
        fields = version_fields(
            model_config={"model": "support-chat-v1", "temperature": temperature}
        )
        version = prompt_services.version_create(actor=owner, prompt=prompt, fields=fields)
        prompt_services.version_submit(actor=owner, version=version)
        prompt_services.version_approve(actor=compliance, version=version)
    prompt_services.promotion_execute(actor=owner, version=prompt.versions.get(number=1))
    return prompt


PASSAGES = {
    "returns": "Returns are accepted within 30 days of delivery with the receipt.",
    "shipping": "Standard shipping takes 3 to 5 working days.",
    "password": "Reset your password with the Forgot password link; it is valid for 30 minutes.",
}
ANSWERS = {
    "returns": "You can return items within 30 days of delivery if you have the receipt.",
    "shipping": "Standard delivery takes three to five working days.",
    "password": "Use the Forgot password link; the reset link works for 30 minutes.",
}


def case_rows(count: int = 24) -> list[dict]:
    """Support cases over three topics, two languages and two roles."""
    topics = sorted(PASSAGES)
    rows = []
    for i in range(count):
        topic = topics[i % 3]
        rows.append(
            {
                "id": f"c{i + 1}",
                "variables": {"context": PASSAGES[topic], "message": f"Question {i} about {topic}"},
                "expected": ANSWERS[topic],
                "contexts": [PASSAGES[topic]],
                "language": "en" if i % 2 == 0 else "de",
                "user_role": "partner" if i % 4 == 3 else "customer",
                "segments": {"topic": topic},
            }
        )
    return rows


def jsonl(rows) -> io.BytesIO:
    return io.BytesIO("".join(json.dumps(r) + "\n" for r in rows).encode())


@pytest.fixture
def dataset(support_prompt, owner):
    """A dataset of 24 support cases checked against the prompt's variables."""
    data = services.dataset_create(
        actor=owner,
        name="Support cases",
        slug="support-cases",
        charter=support_prompt.charter,
        prompt=support_prompt,
    )
    services.dataset_version_upload(
        actor=owner, dataset=data, stream=jsonl(case_rows()), filename="cases.jsonl"
    )
    return data


@pytest.fixture
def suite(dataset, owner, support_prompt):
    """Token F1 and exact match on the dataset; mean token_f1 >= 0.5 blocks."""
    created = services.suite_create(
        actor=owner,
        charter=support_prompt.charter,
        slug="support-quality",
        fields={
            "name": "Support quality",
            "prompt": support_prompt,
            "dataset_version": dataset.latest_version,
            "scorers": [{"scorer": "token_f1"}, {"scorer": "exact_match"}],
            "min_segment_cases": 4,
        },
    )
    services.threshold_set(
        actor=owner,
        suite=created,
        fields={"metric": "token_f1", "aggregate": "mean", "comparator": ">=", "value": 0.5},
    )
    return created


def good_outputs(rows=None) -> list[dict]:
    return [{"id": r["id"], "output": r["expected"]} for r in rows or case_rows()]


def bad_outputs(rows=None, *, only=None) -> list[dict]:
    """Off-topic outputs (for every case, or for cases matching `only`)."""
    out = []
    for r in rows or case_rows():
        wrong = only is None or only(r)
        out.append(
            {"id": r["id"], "output": "I cannot help with that." if wrong else r["expected"]}
        )
    return out


def score_posted(actor, suite, version, outputs, django_capture_on_commit_callbacks, **kw):
    """Start a posted run, post every output and let the (eager) tasks score and finalize it."""
    with django_capture_on_commit_callbacks(execute=True):
        run = services.run_start(actor=actor, suite=suite, prompt_version=version, **kw)
        services.run_outputs_post(
            actor=actor, run=run, items=enumerate(outputs, start=1), complete=True
        )
    run.refresh_from_db()
    return run
