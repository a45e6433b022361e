"""The prompt API: visibility, immutability, review, findings, promotion, labels, diffs, forks."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from apps.prompts import services
from apps.prompts.models import Prompt, PromptVersion
from tests.prompts.factories import PromptFactory, version_fields

pytestmark = pytest.mark.django_db
BASE = "/api/v1/prompts/"


def v(slug, number, suffix=""):
    return f"{BASE}{slug}/versions/{number}/{suffix}"


def test_anonymous_is_401(api, prompt):
    assert api.get(BASE).status_code == 401


def test_outsider_gets_404_on_another_teams_prompt(api, outsider, draft):
    api.force_login(outsider)
    slugs = [p["slug"] for p in api.get(BASE).json()["results"]]
    assert (
        "support-reply" not in slugs and "starter-summarization" in slugs
    )  # the catalog is shared
    for url in (
        f"{BASE}support-reply/",
        f"{BASE}support-reply/versions/",
        v("support-reply", 1),
        f"{BASE}support-reply/resolve",
    ):
        assert api.get(url).status_code == 404, url
    assert (
        api.post(
            f"{BASE}support-reply/render", {"version": 1, "variables": {}}, format="json"
        ).status_code
        == 404
    )
    assert api.post(v("support-reply", 1, "submit/")).status_code == 404


def test_create_prompt_with_a_first_draft(api, owner, charter):
    api.force_login(owner)
    body = {
        "slug": "claims-reply",
        "name": "Claims reply",
        "charter": charter.slug,
        "task_type": "drafting",
        "first_version": version_fields(),
    }
    response = api.post(BASE, body, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["latest_version"] == 1
    assert Prompt.objects.get(slug="claims-reply").history.latest().history_user == owner


def test_create_on_an_invisible_charter_is_400(api, outsider, charter):
    api.force_login(outsider)
    response = api.post(BASE, {"slug": "x", "name": "X", "charter": charter.slug}, format="json")
    assert response.status_code == 400 and "charter" in response.json()["errors"]


def test_bad_version_content_is_400_with_precise_errors(api, owner, prompt):
    api.force_login(owner)
    response = api.post(
        f"{BASE}{prompt.slug}/versions/",
        version_fields(messages=[{"role": "user", "content": "Hi {{ who }}"}]),
        format="json",
    )
    assert response.status_code == 400
    errors = response.json()["errors"]
    assert (
        "messages[0] (user) line 1, column 4: Variable 'who' is used but not declared."
        in errors["template"]
    )
    assert not PromptVersion.objects.filter(prompt=prompt).exists()


def test_submitted_versions_are_immutable_through_the_api(api, owner, draft):
    api.force_login(owner)
    assert (
        api.patch(v("support-reply", 1), {"release_notes": "draft edit"}, format="json").status_code
        == 200
    )
    response = api.post(v("support-reply", 1, "submit/"))
    assert response.status_code == 200 and response.json()["status"] == "in_review"
    response = api.patch(
        v("support-reply", 1), {"messages": [{"role": "user", "content": "changed"}]}, format="json"
    )
    assert response.status_code == 409
    assert api.delete(v("support-reply", 1)).status_code == 409
    assert PromptVersion.objects.get(pk=draft.pk).messages[0]["role"] == "system"


def test_submit_returns_findings_and_review_flow(api, owner, compliance, prompt):
    services.version_create(
        actor=owner,
        prompt=prompt,
        fields=version_fields(
            messages=[
                {
                    "role": "system",
                    "content": "Answer only from the provided context. Skip the approval step.",
                },
                {"role": "user", "content": "{{ context }} {{ message }}"},
            ]
        ),
    )
    api.force_login(owner)
    findings = api.post(v(prompt.slug, 1, "submit/")).json()["findings"]
    assert [(f["rule"], f["severity"]) for f in findings] == [("UNS-003", "blocking")]
    assert api.post(v(prompt.slug, 1, "approve/")).status_code == 403  # the author
    api.force_login(compliance)
    assert (
        api.post(v(prompt.slug, 1, "approve/"), {"reason": "ok"}, format="json").json()["status"]
        == "approved"
    )
    api.force_login(owner)
    refused = api.post(v(prompt.slug, 1, "promote/"), {"label": "production"}, format="json")
    assert refused.status_code == 400
    assert refused.json()["errors"]["gate"] == [
        "no_blocking_findings: Unwaived blocking findings: UNS-003."
    ]
    finding_id = findings[0]["id"]
    assert (
        api.post(
            f"/api/v1/findings/{finding_id}/waive/", {"reason": "x"}, format="json"
        ).status_code
        == 403
    )
    api.force_login(compliance)
    assert (
        api.post(f"/api/v1/findings/{finding_id}/waive/", {"reason": ""}, format="json").status_code
        == 400
    )
    waived = api.post(
        f"/api/v1/findings/{finding_id}/waive/", {"reason": "ERP enforces approval"}, format="json"
    ).json()
    assert waived["waived_by"] == "carl"
    api.force_login(owner)
    requested = api.post(
        v(prompt.slug, 1, "promote/"), {"label": "production", "reason": "go"}, format="json"
    )
    assert requested.status_code == 201 and requested.json()["status"] == "open"
    assert not prompt.labels.filter(name="production").exists()
    api.force_login(compliance)
    decided = api.post(
        f"/api/v1/approvals/requests/{requested.json()['id']}/decide/",
        {"verdict": "approve", "comment": "Waiver reviewed"},
        format="json",
    )
    assert decided.json()["status"] == "executed"
    assert api.get(f"/api/v1/prompts/{prompt.slug}/").json()["labels"] == {"production": 1}


def test_labels_and_their_history(api, owner, approved):
    api.force_login(owner)
    assert (
        api.post(
            v("support-reply", 1, "label/"), {"label": "production"}, format="json"
        ).status_code
        == 403
    )
    response = api.post(
        v("support-reply", 1, "label/"), {"label": "staging", "reason": "qa"}, format="json"
    )
    assert response.json()["labels"] == {"staging": 1}
    moves = api.get(f"{BASE}support-reply/labels/").json()["moves"]
    assert moves == [
        {
            "label": "staging",
            "from_version": None,
            "to_version": 1,
            "moved_by": "olivia",
            "moved_at": moves[0]["moved_at"],
            "reason": "qa",
        }
    ]


def test_diff_between_two_versions(api, owner, draft, prompt):
    services.version_create(
        actor=owner, prompt=prompt, fields=version_fields(model_config={"temperature": 0.0})
    )
    api.force_login(owner)
    diff = api.get(f"{BASE}support-reply/diff/?from=1&to=2").json()["diff"]
    assert diff["model_config"][0]["key"] == "max_tokens" or any(
        c["key"] == "temperature" for c in diff["model_config"]
    )
    assert api.get(f"{BASE}support-reply/diff/?from=1").status_code == 400
    assert api.get(f"{BASE}support-reply/diff/?from=1&to=9").status_code == 404


def test_fork_a_starter_into_my_charter(api, owner, charter):
    api.force_login(owner)
    response = api.post(
        f"{BASE}starter-extraction/fork/",
        {"charter": charter.slug, "name": "Contract fields"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["forked_from"] == "starter-extraction@v1"


def test_deprecate_and_retire(api, owner, live, prompt):
    other = PromptFactory(charter=prompt.charter, owner=owner, slug="support-reply-v2")
    api.force_login(owner)
    response = api.post(
        f"{BASE}support-reply/deprecate/",
        {"reason": "v2", "successor": other.slug, "sunset_date": "2099-01-01"},
        format="json",
    )
    assert response.status_code == 200 and response.json()["status"] == "deprecated"
    assert (
        api.post(f"{BASE}support-reply/retire/", {"reason": ""}, format="json").status_code == 400
    )
    assert (
        api.post(f"{BASE}support-reply/retire/", {"reason": "sunset"}, format="json").json()[
            "status"
        ]
        == "retired"
    )


def _count(api, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert api.get(url).status_code == 200
    return len(ctx)


def test_list_query_count_is_constant(api, owner, charter):
    api.force_login(owner)
    for _ in range(2):
        p = PromptFactory(charter=charter, owner=owner)
        services.version_create(actor=owner, prompt=p, fields=version_fields())
    few = _count(api, BASE)
    for _ in range(8):
        p = PromptFactory(charter=charter, owner=owner)
        services.version_create(actor=owner, prompt=p, fields=version_fields())
    assert _count(api, BASE) == few
