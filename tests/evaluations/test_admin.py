"""Compliance in the admin: reads every evaluation object, changes thresholds with a recorded
reason, cancels runs; outsiders with staff access see none of another team's objects."""

import pytest

from apps.evaluations.models import Threshold
from tests.evaluations.fixtures import good_outputs

pytestmark = pytest.mark.django_db
ADMIN = "/admin/evaluations/"


@pytest.fixture
def carl(compliance):
    compliance.is_staff = True
    compliance.save()
    return compliance


@pytest.fixture
def staff_owner(owner):
    owner.is_staff = True
    owner.save()
    return owner


def test_compliance_reads_datasets_suites_runs_and_their_progress(
    client, carl, owner, suite, support_prompt
):
    from apps.evaluations import services

    run = services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2)
    )
    client.force_login(carl)
    for path in ("dataset/", "suite/", "run/", "modelartifact/"):
        assert client.get(f"{ADMIN}{path}").status_code == 200, path
    page = client.get(f"{ADMIN}run/{run.pk}/change/").content.decode()
    assert "0/24 (0.0%)" in page
    assert "Support quality" in client.get(f"{ADMIN}suite/").content.decode()


def test_threshold_change_in_the_admin_goes_through_the_service_with_its_reason(
    client, staff_owner, suite
):
    threshold = suite.thresholds.get()
    client.force_login(staff_owner)
    url = f"{ADMIN}suite/{suite.pk}/change/"
    form = {
        "name": suite.name,
        "description": "",
        "prompt": suite.prompt_id,
        "dataset_version": suite.dataset_version_id,
        "scorers": '[{"scorer": "token_f1", "params": {"pass_at": 0.5}}, {"scorer": "exact_match", "params": {"case_sensitive": false, "strip": true, "normalize_whitespace": true}}]',
        "regression_tolerance": "0.05",
        "min_segment_cases": "4",
        "thresholds-TOTAL_FORMS": "1",
        "thresholds-INITIAL_FORMS": "1",
        "thresholds-MIN_NUM_FORMS": "0",
        "thresholds-MAX_NUM_FORMS": "1000",
        "thresholds-0-id": threshold.pk,
        "thresholds-0-suite": suite.pk,
        "thresholds-0-metric": "token_f1",
        "thresholds-0-aggregate": "mean",
        "thresholds-0-comparator": ">=",
        "thresholds-0-value": "0.65",
        "thresholds-0-blocking": "on",
        "thresholds-0-min_cases": "0",
        "thresholds-0-segment_key": "",
        "thresholds-0-rationale": "",
        "thresholds-0-owner": staff_owner.pk,
        "thresholds-0-reason": "Audit finding 12: raise the bar",
    }
    response = client.post(url, form)
    assert response.status_code == 302, response.content.decode()[:3000]
    threshold.refresh_from_db()
    assert threshold.value == 0.65
    latest = threshold.history.first()
    assert latest.history_change_reason == "Audit finding 12: raise the bar"
    assert latest.history_user == staff_owner
    form["thresholds-0-metric"] = "bleu"
    client.post(url, form)
    assert Threshold.objects.get(pk=threshold.pk).metric == "token_f1"


def test_cancel_action_asks_for_a_reason(client, staff_owner, suite, support_prompt):
    from apps.evaluations import services

    owner = staff_owner
    run = services.run_start(
        actor=owner, suite=suite, prompt_version=support_prompt.versions.get(number=2)
    )
    services.run_outputs_post(actor=owner, run=run, items=enumerate(good_outputs()[:2], 1))
    client.force_login(owner)
    data = {"action": "cancel", "_selected_action": [run.pk]}
    asked = client.post(f"{ADMIN}run/", data)
    assert b"give a reason" in asked.content
    client.post(f"{ADMIN}run/", {**data, "apply": "1", "reason": "Superseded by v3"})
    run.refresh_from_db()
    assert run.status == "cancelled" and run.error == "Superseded by v3"


def test_staff_outsiders_see_no_other_teams_objects(client, outsider, suite):
    outsider.is_staff = True
    outsider.save()
    client.force_login(outsider)
    response = client.get(f"{ADMIN}suite/")
    assert response.status_code in (200, 403)
    assert "Support quality" not in response.content.decode()
