"""NUL characters are refused as invalid input wherever text arrives; oversized JSON bodies
are refused with the way to send them."""

import json

import pytest
from django.test import Client

from tests.evaluations.fixtures import good_outputs

pytestmark = pytest.mark.django_db
RUNS = "/api/v1/evaluations/runs/"


def _run(client, suite, support_prompt) -> int:
    run = client.post(
        RUNS,
        {"suite": suite.slug, "prompt": support_prompt.slug, "version": 2},
        content_type="application/json",
    )
    assert run.status_code == 201, run.content
    return run.json()["id"]


def test_a_nul_escape_in_a_json_body_is_refused_before_the_database(
    client, owner, suite, support_prompt
):
    client.force_login(owner)
    run = _run(client, suite, support_prompt)
    outputs = good_outputs()[:2]
    outputs[1]["output"] = "before\x00after"

    refused = client.post(
        f"{RUNS}{run}/outputs/", json.dumps(outputs), content_type="application/json"
    )

    assert refused.status_code == 400
    assert "NUL" in refused.json()["errors"]["body"][0]
    # The literal text \u0000 (an escaped backslash) is storable and accepted.
    outputs[1]["output"] = "a literal \\u0000"
    kept = client.post(
        f"{RUNS}{run}/outputs/", json.dumps(outputs), content_type="application/json"
    )
    assert kept.status_code == 200 and kept.json()["received"] == 2


def test_a_json_body_past_the_size_limit_is_refused_with_a_way_forward(
    client, owner, suite, support_prompt, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
    client.force_login(owner)
    run = _run(client, suite, support_prompt)
    outputs = [{**o, "output": o["output"] + " " + "x" * 100_000} for o in good_outputs()]

    posted = client.post(
        f"{RUNS}{run}/outputs/", json.dumps(outputs), content_type="application/json"
    )

    assert posted.status_code == 413
    assert posted.json()["code"] == "too_large" and "outputs.jsonl" in posted.json()["detail"]
    # Streamed as JSONL, the same outputs are taken whole.
    lines = "".join(json.dumps(o) + "\n" for o in outputs).encode()
    streamed = client.generic(
        "POST", f"{RUNS}{run}/outputs.jsonl", lines, content_type="application/x-ndjson"
    )
    assert streamed.status_code == 200 and streamed.json()["posted"] == 24


def test_a_nul_in_a_query_is_refused_on_pages_and_in_the_api(owner):
    client = Client()
    client.force_login(owner)

    assert client.get("/prompts/?q=a\x00b").status_code == 400
    api = client.get("/api/v1/charters/?search=a\x00b")
    assert api.status_code == 400 and "NUL" in api.json()["detail"]


def test_a_nul_in_a_form_or_multipart_field_is_refused(owner, charter, media):
    from django.core.files.uploadedfile import SimpleUploadedFile
    from rest_framework.test import APIClient

    api = APIClient()
    api.force_authenticate(owner)
    form = api.patch(
        f"/api/v1/charters/{charter.slug}/",
        "title=a%00b",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 400 and "NUL" in form.json()["errors"]["title"][0]
    upload = api.post(
        "/api/v1/evaluations/artifacts/",
        {
            "name": "Model",
            "task": "sequence_classification",
            "charter": "a\x00b",
            "model_file": SimpleUploadedFile("model.onnx", b"\x08\x07"),
        },
        format="multipart",
    )
    assert upload.status_code == 400 and "NUL" in upload.json()["errors"]["charter"][0]
