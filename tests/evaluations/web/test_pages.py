"""The evaluations pages for the people who use them: authors upload and run, everyone reads
the run report; outsiders see nothing."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from playwright.sync_api import expect

from tests.browser import log_in
from tests.evaluations.fixtures import bad_outputs, case_rows, good_outputs, score_posted

pytestmark = pytest.mark.django_db


@pytest.fixture
def candidate_run(owner, suite, support_prompt, django_capture_on_commit_callbacks):
    """v1 scored (the production baseline), then v2 scored with partners answered badly."""
    v1, v2 = support_prompt.versions.order_by("number")
    score_posted(owner, suite, v1, good_outputs(), django_capture_on_commit_callbacks)
    return score_posted(
        owner,
        suite,
        v2,
        bad_outputs(only=lambda r: r["user_role"] == "partner"),
        django_capture_on_commit_callbacks,
    )


def test_run_page_shows_verdict_distributions_segments_comparison_and_worst_cases(
    client, owner, candidate_run
):
    client.force_login(owner)
    page = client.get(candidate_run.get_absolute_url()).content.decode()
    assert 'data-verdict="pass"' in page
    assert 'data-metric="token_f1"' in page and "histogram__bar" in page
    assert 'class="segment--failing" data-segment="user_role=partner"' in page
    assert 'data-segment="user_role=customer"' in page
    assert "Regressed segments" in page and "in user_role=partner" in page
    assert "Worst cases" in page and "I cannot help with that." in page


def test_outsiders_get_404_on_every_page(client, outsider, candidate_run, dataset, suite):
    client.force_login(outsider)
    for url in (
        candidate_run.get_absolute_url(),
        dataset.get_absolute_url(),
        suite.get_absolute_url(),
        f"/evaluations/datasets/{dataset.slug}/v1/export/",
    ):
        assert client.get(url).status_code == 404, url
    assert client.get("/evaluations/").status_code == 200
    assert "Support quality" not in client.get("/evaluations/").content.decode()


def test_upload_form_lists_every_bad_row(client, owner, dataset):
    client.force_login(owner)
    rows = case_rows(3)
    rows[2]["contexts"] = "fine"
    rows[1]["variables"] = {"context": "x"}
    body = "".join(json.dumps(r) + "\n" for r in rows).encode()
    response = client.post(
        dataset.get_absolute_url(), {"file": SimpleUploadedFile("x.jsonl", body)}
    )
    page = response.content.decode()
    assert response.status_code == 200
    assert "line 2: Missing required variable(s): message." in page
    assert dataset.versions.count() == 1
    good = "".join(json.dumps(r) + "\n" for r in case_rows(3)).encode()
    response = client.post(
        dataset.get_absolute_url(), {"file": SimpleUploadedFile("x.jsonl", good)}
    )
    assert response.status_code == 302 and dataset.versions.count() == 2


def test_author_adds_a_threshold_and_starts_a_run_from_the_suite_page(
    client, owner, suite, support_prompt
):
    client.force_login(owner)
    response = client.post(
        suite.get_absolute_url(),
        {
            "action": "threshold",
            "metric": "exact_match",
            "aggregate": "pass_rate",
            "comparator": ">=",
            "value": "0.5",
            "min_cases": "0",
            "blocking": "on",
        },
    )
    assert response.status_code == 302 and suite.thresholds.count() == 2
    outputs = "".join(json.dumps(o) + "\n" for o in good_outputs()).encode()
    response = client.post(
        suite.get_absolute_url(),
        {
            "action": "run",
            "prompt_version": support_prompt.versions.get(number=2).pk,
            "output_source": "posted",
            "outputs_file": SimpleUploadedFile("o.jsonl", outputs),
        },
    )
    assert response.status_code == 302
    run = suite.runs.get()
    assert run.outputs.count() == 24 and run.status == "queued"


def test_readers_do_not_get_author_forms(client, compliance, suite):
    client.force_login(compliance)
    page = client.get(suite.get_absolute_url()).content.decode()
    assert "Add a threshold" not in page and "Start a run" not in page
    response = client.post(suite.get_absolute_url(), {"action": "threshold", "metric": "token_f1"})
    assert response.status_code == 403


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_reviewer_reads_the_failing_segment_in_a_real_browser(
    page, owner, password, suite, support_prompt, django_capture_on_commit_callbacks
):
    v1, v2 = support_prompt.versions.order_by("number")
    score_posted(owner, suite, v1, good_outputs(), django_capture_on_commit_callbacks)
    run = score_posted(
        owner,
        suite,
        v2,
        bad_outputs(only=lambda r: r["user_role"] == "partner"),
        django_capture_on_commit_callbacks,
    )
    log_in(page, "olivia", password)
    page.goto(run.get_absolute_url())
    expect(page.locator("h1 .verdict")).to_have_text("Pass")
    partner = page.locator('tr[data-segment="user_role=partner"]')
    expect(partner).to_have_class("segment--failing")
    expect(partner.locator("td.cell--bad").first).to_be_visible()
    expect(page.locator('tr[data-segment="user_role=customer"]')).not_to_have_class(
        "segment--failing"
    )
    expect(page.locator("#regressions")).to_contain_text("token_f1")
    expect(page.locator(".metric")).to_have_count(2)
    assert page.errors == []


def test_author_pages_create_a_dataset_and_a_suite(client, owner, dataset, support_prompt):
    client.force_login(owner)
    for url in (
        "/evaluations/datasets/",
        "/evaluations/datasets/new/",
        "/evaluations/suites/new/",
        "/evaluations/models/",
        f"/evaluations/datasets/{dataset.slug}/v1/",
    ):
        assert client.get(url).status_code == 200, url
    response = client.post(
        "/evaluations/datasets/new/",
        {"name": "Escalations", "charter": support_prompt.charter.pk, "prompt": support_prompt.pk},
    )
    assert (
        response.status_code == 302 and response["Location"] == "/evaluations/datasets/escalations/"
    )
    bad = client.post(
        "/evaluations/suites/new/",
        {
            "name": "S",
            "charter": support_prompt.charter.pk,
            "dataset_version": dataset.latest_version.pk,
            "scorers": "[{",
            "regression_tolerance": "0.05",
            "min_segment_cases": "20",
        },
    )
    assert "Not valid JSON" in bad.content.decode()
    good = client.post(
        "/evaluations/suites/new/",
        {
            "name": "Exact",
            "charter": support_prompt.charter.pk,
            "dataset_version": dataset.latest_version.pk,
            "scorers": '[{"scorer": "exact_match"}]',
            "regression_tolerance": "0.05",
            "min_segment_cases": "20",
        },
    )
    assert good.status_code == 302
    edit = client.get(good["Location"] + "edit/")
    assert edit.status_code == 200 and "exact_match" in edit.content.decode()


def test_artifact_pages_show_validation_and_upload_errors(client, engineer, default_encoder):
    client.force_login(engineer)
    page = client.get(default_encoder.get_absolute_url()).content.decode()
    assert "Loads in ONNX Runtime" in page and "Derive int8 variant" in page
    response = client.post("/evaluations/models/", {"name": "", "task": "cross_encoder"})
    assert response.status_code == 200 and "Nothing was kept" in response.content.decode()
