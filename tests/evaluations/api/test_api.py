"""The evaluations API: datasets, artifacts, suites, runs and the CI gate call."""

import io
import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from apps.core import groups
from apps.core.services import api_key_create
from tests.evaluations.fixtures import bad_outputs, case_rows, good_outputs
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/evaluations"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def ci_key(db):
    """A CI pipeline's service user (integrations group) and its API key."""
    user = UserFactory(username="ci-pipeline", groups=[groups.INTEGRATIONS])
    _, plain = api_key_create(user=user, name="ci")
    return plain


def _jsonl_file(rows, name="cases.jsonl"):
    return SimpleUploadedFile(name, "".join(json.dumps(r) + "\n" for r in rows).encode())


def test_anonymous_callers_get_401(api):
    for path in ("datasets/", "artifacts/", "suites/", "runs/"):
        assert api.get(f"{BASE}/{path}").status_code == 401


def test_dataset_create_upload_list_and_export(api, owner, support_prompt):
    api.force_authenticate(owner)
    created = api.post(
        f"{BASE}/datasets/",
        {
            "name": "Support cases",
            "charter": support_prompt.charter.slug,
            "prompt": support_prompt.slug,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    slug = created.json()["slug"]
    upload = api.post(
        f"{BASE}/datasets/{slug}/versions/", {"file": _jsonl_file(case_rows(5))}, format="multipart"
    )
    assert upload.status_code == 201 and upload.json()["case_count"] == 5
    cases = api.get(f"{BASE}/datasets/{slug}/versions/1/cases/").json()
    assert cases["count"] == 5 and cases["results"][0]["id"] == "c1"
    exported = api.get(f"{BASE}/datasets/{slug}/versions/1/export/")
    assert exported["Content-Type"] == "application/x-ndjson"
    lines = b"".join(exported.streaming_content).decode().splitlines()
    assert len(lines) == 5 and json.loads(lines[0])["id"] == "c1"
    derived = api.post(
        f"{BASE}/datasets/{slug}/versions/derive/", {"removals": ["c1"]}, format="json"
    )
    assert derived.status_code == 201 and derived.json()["case_count"] == 4


def test_bad_rows_are_a_400_with_every_line(api, owner, dataset):
    api.force_authenticate(owner)
    rows = case_rows(3)
    del rows[1]["id"]
    response = api.post(
        f"{BASE}/datasets/{dataset.slug}/versions/", {"file": _jsonl_file(rows)}, format="multipart"
    )
    assert response.status_code == 400
    assert response.json()["errors"]["file"] == ["line 2: 'id' is required."]
    assert dataset.versions.count() == 1


def test_other_teams_objects_are_404(api, outsider, suite, dataset, owner, support_prompt):
    api.force_authenticate(owner)
    run_id = api.post(
        f"{BASE}/runs/",
        {"suite": suite.slug, "prompt": support_prompt.slug, "version": 2},
        format="json",
    ).json()["id"]
    api.force_authenticate(outsider)
    assert api.get(f"{BASE}/datasets/{dataset.slug}/").status_code == 404
    assert api.get(f"{BASE}/suites/{suite.slug}/").status_code == 404
    assert api.get(f"{BASE}/runs/{run_id}/").status_code == 404
    assert api.get(f"{BASE}/runs/").json()["count"] == 0
    response = api.post(
        f"{BASE}/runs/",
        {"suite": suite.slug, "prompt": support_prompt.slug, "version": 2},
        format="json",
    )
    assert response.status_code == 400 and response.json()["errors"]["suite"] == ["No such suite."]


def test_suite_create_and_threshold_commands(api, owner, dataset, support_prompt):
    api.force_authenticate(owner)
    created = api.post(
        f"{BASE}/suites/",
        {
            "name": "Exactness",
            "charter": support_prompt.charter.slug,
            "dataset": dataset.slug,
            "scorers": [
                {"scorer": "exact_match"},
                {"scorer": "length", "params": {"max_words": 60}},
            ],
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    slug = created.json()["slug"]
    added = api.post(
        f"{BASE}/suites/{slug}/thresholds/",
        {"metric": "exact_match", "aggregate": "pass_rate", "comparator": ">=", "value": 0.8},
        format="json",
    )
    assert added.status_code == 201 and added.json()["owner"] == owner.username
    bad = api.post(
        f"{BASE}/suites/{slug}/thresholds/", {"metric": "bleu", "value": 1}, format="json"
    )
    assert bad.status_code == 400 and "metric" in bad.json()["errors"]
    changed = api.patch(
        f"{BASE}/suites/{slug}/thresholds/{added.json()['id']}/",
        {"value": 0.9, "reason": "Stricter for GA"},
        format="json",
    )
    assert changed.status_code == 200 and changed.json()["value"] == 0.9
    assert api.get(f"{BASE}/suites/{slug}/").json()["thresholds"][0]["value"] == 0.9


@pytest.mark.django_db(transaction=True)
def test_ci_gate_in_one_call_with_posted_outputs(api, ci_key, suite, support_prompt):
    api.credentials(HTTP_AUTHORIZATION=f"Api-Key {ci_key}")
    passed = api.post(
        f"{BASE}/runs/",
        {
            "suite": suite.slug,
            "prompt": support_prompt.slug,
            "version": 2,
            "outputs": good_outputs(),
            "wait": 30,
        },
        format="json",
    )
    assert passed.status_code == 200, passed.json()
    assert passed.json()["verdict"] == "pass" and passed.json()["status"] == "completed"
    failed = api.post(
        f"{BASE}/runs/",
        {
            "suite": suite.slug,
            "prompt": support_prompt.slug,
            "label": "production",
            "outputs": bad_outputs(),
            "wait": 30,
        },
        format="json",
    )
    assert failed.status_code == 422 and failed.json()["verdict"] == "fail"
    assert failed.json()["prompt_version"] == 1
    verdict = api.get(f"{BASE}/runs/{failed.json()['id']}/verdict/")
    assert verdict.status_code == 422


@pytest.mark.django_db(transaction=True)
def test_posting_outputs_in_parts_then_scoring(api, owner, suite, support_prompt):
    api.force_authenticate(owner)
    run = api.post(
        f"{BASE}/runs/",
        {"suite": suite.slug, "prompt": support_prompt.slug, "version": 2},
        format="json",
    ).json()
    assert run["status"] == "awaiting_outputs"
    assert api.get(f"{BASE}/runs/{run['id']}/verdict/").status_code == 202
    part = api.post(f"{BASE}/runs/{run['id']}/outputs/", good_outputs()[:10], format="json")
    assert part.json() == {"received": 10, "posted": 10, "total": 24}
    body = "".join(json.dumps(o) + "\n" for o in good_outputs()[10:]).encode() + b"oops\n"
    bad = api.generic(
        "POST", f"{BASE}/runs/{run['id']}/outputs.jsonl", body, content_type="application/x-ndjson"
    )
    assert bad.status_code == 400
    assert bad.json()["errors"]["outputs"][0].startswith("line 15: not JSON")
    rest = "".join(json.dumps(o) + "\n" for o in good_outputs()[10:]).encode()
    done = api.generic(
        "POST", f"{BASE}/runs/{run['id']}/outputs.jsonl", rest, content_type="application/x-ndjson"
    )
    assert done.json()["posted"] == 24
    detail = api.get(f"{BASE}/runs/{run['id']}/").json()
    assert (
        detail["status"] == "completed" and detail["summary"]["overall"]["token_f1"]["count"] == 24
    )
    again = api.post(f"{BASE}/runs/{run['id']}/outputs/", good_outputs()[:1], format="json")
    assert again.status_code == 409


@pytest.mark.django_db(transaction=True)
def test_results_are_paginated_filterable_and_query_count_is_pinned(
    api, owner, suite, support_prompt, django_assert_max_num_queries
):
    api.force_authenticate(owner)
    run = api.post(
        f"{BASE}/runs/",
        {
            "suite": suite.slug,
            "prompt": support_prompt.slug,
            "version": 2,
            "outputs": bad_outputs(only=lambda r: r["language"] == "de"),
        },
        format="json",
    ).json()
    with django_assert_max_num_queries(8):
        page = api.get(f"{BASE}/runs/{run['id']}/results/?limit=50").json()
    assert page["count"] == 24 and page["results"][0]["output"]
    failed = api.get(f"{BASE}/runs/{run['id']}/results/?failed=1&segment=language=de").json()
    assert failed["count"] == 12
    assert all(r["segments"]["language"] == "de" and not r["passed"] for r in failed["results"])
    with django_assert_max_num_queries(8):
        listing = api.get(f"{BASE}/runs/").json()
    assert listing["count"] == 1


def test_cancel_via_api(api, owner, suite, support_prompt):
    api.force_authenticate(owner)
    run = api.post(
        f"{BASE}/runs/",
        {"suite": suite.slug, "prompt": support_prompt.slug, "version": 2},
        format="json",
    ).json()
    cancelled = api.post(
        f"{BASE}/runs/{run['id']}/cancel/", {"reason": "Wrong suite"}, format="json"
    )
    assert cancelled.json()["status"] == "cancelled"
    assert api.get(f"{BASE}/runs/{run['id']}/verdict/").status_code == 409
    assert api.post(f"{BASE}/runs/{run['id']}/cancel/", {}, format="json").status_code == 409


def test_artifact_upload_and_listing(api, engineer, media, tiny_classifier, minilm_tokenizer):
    api.force_authenticate(engineer)
    model = io.BytesIO(tiny_classifier(2).SerializeToString())
    model.name = "model.onnx"
    response = api.post(
        f"{BASE}/artifacts/",
        {
            "name": "Spam filter",
            "task": "sequence_classification",
            "model_file": model,
            "tokenizer_file": SimpleUploadedFile("tokenizer.json", minilm_tokenizer.read_bytes()),
            "labels": ["ham", "spam"],
            "max_seq_length": 64,
        },
        format="multipart",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["status"] in {"pending", "valid"}
    assert len(response.json()["sha256"]) == 64
    assert api.get(f"{BASE}/artifacts/").json()["count"] == 1


def test_charter_scoped_artifacts_are_invisible_to_other_teams(
    api, owner, outsider, charter, media, tiny_classifier, minilm_tokenizer
):
    from apps.evaluations import services

    artifact = services.artifact_upload(
        actor=owner,
        name="Support intents",
        task="sequence_classification",
        model_file=io.BytesIO(tiny_classifier(2).SerializeToString()),
        tokenizer_file=io.BytesIO(minilm_tokenizer.read_bytes()),
        labels=["a", "b"],
        charter=charter,
    )
    api.force_authenticate(outsider)
    assert api.get(f"{BASE}/artifacts/{artifact.slug}/").status_code == 404
    assert api.get(f"{BASE}/artifacts/").json()["count"] == 0
    assert api.post(f"{BASE}/artifacts/{artifact.slug}/retire/").status_code == 404
    api.force_authenticate(owner)
    assert api.get(f"{BASE}/artifacts/{artifact.slug}/").status_code == 200
