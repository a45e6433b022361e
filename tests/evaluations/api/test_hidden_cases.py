"""Hidden cases stay hidden: who may see a run but not its dataset reads outputs, scores and
pass/fail, never the cases' expected answers, contexts or input variables; and every key is
scoped like a person: a key that was never granted a charter gets 404 on its runs.

The world: Olivia's suite on her *support* charter judges a dataset of her *vault* charter.
Rita may view the support charter (not the vault), the helpdesk application's key has the
support charter shared with it, the CI pipeline's key (integrations, nothing granted) runs
the suite through the gate, and the crm application's key belongs to Oscar's charter.
Markers planted in the vault's expected answers, contexts and variables must never appear in
the bytes any of them gets back, while Olivia sees them.
"""

from __future__ import annotations

import json

import pytest
from django.test import Client
from rest_framework.test import APIClient

from apps.charters.services import charter_share
from apps.core import groups
from apps.core.services import api_key_create
from apps.evaluations import permissions, selectors, services
from apps.evaluations.models import CaseResult, Run
from apps.prompts import services as prompt_services
from tests.evaluations.fixtures import ANSWERS, case_rows, jsonl
from tests.factories import CharterFactory, UserFactory

pytestmark = pytest.mark.django_db
BASE = "/api/v1/evaluations"

EXPECTED = "EXPECTED-SECRET-7Q"
CONTEXT = "CONTEXT-SECRET-3Z"
VARIABLE = "VARIABLE-SECRET-9K"
MARKERS = (EXPECTED, CONTEXT, VARIABLE)


def vault_rows() -> list[dict]:
    """The support cases with a marker in every expected answer, context and variable."""
    rows = case_rows()
    for row in rows:
        row["expected"] = f"{row['expected']} {EXPECTED}"
        row["contexts"] = [f"{CONTEXT} {passage}" for passage in row["contexts"]]
        row["variables"]["message"] = f"{row['variables']['message']} {VARIABLE}"
    return rows


def outputs() -> list[dict]:
    """Good answers that carry no marker (outputs are for every reader of the run)."""
    topics = sorted(ANSWERS)
    return [{"id": r["id"], "output": ANSWERS[topics[i % 3]]} for i, r in enumerate(case_rows())]


def _absent(body: bytes) -> None:
    for marker in MARKERS:
        assert marker.encode() not in body, f"{marker} leaked"


def _content(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


@pytest.fixture
def vault(owner):
    """Olivia's second charter: the one holding the hidden dataset."""
    return CharterFactory(business_owner=owner, title="Vault of answers", slug="vault")


@pytest.fixture
def hidden_dataset(vault, owner):
    data = services.dataset_create(
        actor=owner, name="Vault cases", slug="vault-cases", charter=vault
    )
    services.dataset_version_upload(
        actor=owner, dataset=data, stream=jsonl(vault_rows()), filename="cases.jsonl"
    )
    return data


@pytest.fixture
def hidden_suite(hidden_dataset, owner, support_prompt):
    """A suite of the support charter judging the vault's dataset (Olivia sees both)."""
    return services.suite_create(
        actor=owner,
        charter=support_prompt.charter,
        slug="vault-quality",
        fields={
            "name": "Vault quality",
            "prompt": support_prompt,
            "dataset_version": hidden_dataset.latest_version,
            # label_accuracy makes the summary carry a per-label report keyed by the answers.
            "scorers": [{"scorer": "token_f1"}, {"scorer": "label_accuracy"}],
            "min_segment_cases": 4,
        },
    )


@pytest.fixture
def reader(owner, charter):
    """Rita: may view the support charter, not the vault."""
    rita = UserFactory(username="rita")
    charter_share(actor=owner, charter=charter, user=rita, access="view")
    return rita


@pytest.fixture
def app_key(owner, charter):
    """The helpdesk application's key, the support charter shared with its service user."""
    app = prompt_services.application_create(actor=owner, name="Helpdesk", slug="helpdesk")
    charter_share(actor=owner, charter=charter, user=app.service_user, access="view")
    return prompt_services.application_key_create(actor=owner, application=app, name="prod")[1]


@pytest.fixture
def ci_key(db):
    """A CI pipeline's service user (integrations group), granted nothing on any charter."""
    user = UserFactory(username="ci-pipeline", groups=[groups.INTEGRATIONS])
    return api_key_create(user=user, name="ci")[1]


@pytest.fixture
def foreign_key(outsider):
    """The crm application's key: Oscar's charter shared with it, never Olivia's."""
    bravo = CharterFactory(business_owner=outsider, title="Bravo sales", slug="bravo")
    app = prompt_services.application_create(actor=outsider, name="CRM", slug="crm")
    charter_share(actor=outsider, charter=bravo, user=app.service_user, access="view")
    return prompt_services.application_key_create(actor=outsider, application=app, name="p")[1]


@pytest.fixture
def run(hidden_suite, owner, support_prompt, django_capture_on_commit_callbacks):
    """Olivia's completed run; one case's error echoes its input (as an upstream error may)."""
    with django_capture_on_commit_callbacks(execute=True):
        started = services.run_start(
            actor=owner, suite=hidden_suite, prompt_version=support_prompt.versions.get(number=2)
        )
        services.run_outputs_post(
            actor=owner, run=started, items=enumerate(outputs(), start=1), complete=True
        )
    started.refresh_from_db()
    assert started.status == "completed", started.error
    assert EXPECTED in json.dumps(started.summary)  # the per-label report names the answers
    CaseResult.objects.filter(run=started, case__external_id="c1").update(
        passed=False, error=f"The endpoint refused: 'Question 0 about password {VARIABLE}'."
    )
    return started


def _key_client(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Api-Key {key}")
    return client


def _person_client(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def _run_reads(run_id: int) -> list[str]:
    return [
        f"{BASE}/runs/{run_id}/",
        f"{BASE}/runs/{run_id}/results/?limit=100",
        f"{BASE}/runs/{run_id}/results/?failed=1",
        f"{BASE}/runs/{run_id}/verdict/",
        f"{BASE}/runs/",
    ]


def _dataset_reads(slug: str) -> list[str]:
    return [
        f"{BASE}/datasets/{slug}/",
        f"{BASE}/datasets/{slug}/versions/",
        f"{BASE}/datasets/{slug}/versions/1/cases/",
        f"{BASE}/datasets/{slug}/versions/1/export/",
    ]


# --- the owner sees the cases ---------------------------------------------------------------------


def test_the_owner_sees_expected_answers_contexts_and_errors(owner, run, hidden_dataset):
    api = _person_client(owner)
    page = api.get(f"{BASE}/runs/{run.pk}/results/?limit=100")
    assert page.status_code == 200
    rows = {r["case"]: r for r in page.json()["results"]}
    assert EXPECTED in rows["c2"]["expected"] and CONTEXT in rows["c2"]["contexts"][0]
    assert VARIABLE in rows["c1"]["error"]
    detail = api.get(f"{BASE}/runs/{run.pk}/").json()
    assert any(EXPECTED in label for label in detail["summary"]["labels"])
    exported = api.get(f"{BASE}/datasets/{hidden_dataset.slug}/versions/1/export/")
    assert VARIABLE.encode() in _content(exported)
    web = Client()
    web.force_login(owner)
    body = web.get(f"/evaluations/runs/{run.pk}/").content
    assert EXPECTED.encode() in body and CONTEXT.encode() in body


# --- who sees the run but not the dataset ------------------------------------------------------


@pytest.mark.parametrize("who", ["reader", "app_key"])
def test_a_reader_without_the_dataset_sees_scores_never_the_cases(who, request, run):
    persona = request.getfixturevalue(who)
    api = _key_client(persona) if who == "app_key" else _person_client(persona)
    for path in _run_reads(run.pk):
        response = api.get(path)
        assert response.status_code == 200, (path, response.status_code)
        _absent(response.content)
    page = api.get(f"{BASE}/runs/{run.pk}/results/?limit=100").json()
    assert page["count"] == 24
    for row in page["results"]:
        assert row["expected"] is None and row["contexts"] is None
        assert row["output"] and row["metrics"] and isinstance(row["passed"], bool)
    c1 = next(r for r in page["results"] if r["case"] == "c1")
    assert c1["error"] == f"The endpoint refused: '{selectors.HIDDEN}'."
    detail = api.get(f"{BASE}/runs/{run.pk}/").json()
    assert "labels" not in detail["summary"] and detail["summary"]["overall"]["token_f1"]
    assert detail["verdict"] == run.verdict


@pytest.mark.parametrize("who", ["reader", "app_key", "ci_key"])
def test_the_hidden_dataset_and_its_exports_are_404(who, request, run, hidden_dataset):
    persona = request.getfixturevalue(who)
    api = _person_client(persona) if who == "reader" else _key_client(persona)
    for path in _dataset_reads(hidden_dataset.slug):
        response = api.get(path)
        assert response.status_code == 404, path
        _absent(_content(response))


def test_the_run_page_hides_worst_cases_fields_and_the_label_report(reader, run, hidden_dataset):
    web = Client()
    web.force_login(reader)
    page = web.get(f"/evaluations/runs/{run.pk}/")
    assert page.status_code == 200
    _absent(page.content)
    assert b"Worst cases" in page.content and b"Hidden: you may not view" in page.content
    assert b'id="labels"' not in page.content
    for path in (
        f"/evaluations/datasets/{hidden_dataset.slug}/",
        f"/evaluations/datasets/{hidden_dataset.slug}/v1/",
        f"/evaluations/datasets/{hidden_dataset.slug}/v1/export/",
    ):
        response = web.get(path)
        assert response.status_code == 404, path
        _absent(_content(response))


@pytest.mark.parametrize("fmt", ["json", "csv"])
def test_the_evidence_pack_holds_no_case_fields(fmt, reader, owner, run, charter):
    for persona in (reader, owner):
        api = _person_client(persona)
        response = api.get(f"/api/v1/charters/{charter.slug}/evidence/?as={fmt}")
        assert response.status_code == 200 and response.content
        _absent(response.content)
        web = Client()
        web.force_login(persona)
        page = web.get(f"/approvals/evidence/{charter.slug}.{fmt}")
        assert page.status_code == 200
        _absent(page.content)


# --- keys are scoped like people ---------------------------------------------------------------


@pytest.mark.parametrize("who", ["ci_key", "foreign_key"])
def test_a_key_never_granted_the_charter_gets_404_on_its_runs(who, request, run):
    api = _key_client(request.getfixturevalue(who))
    for path in _run_reads(run.pk)[:-1]:
        response = api.get(path)
        assert response.status_code == 404, (path, response.status_code)
        _absent(response.content)
    assert api.get(f"{BASE}/runs/").json()["count"] == 0
    posted = api.post(f"{BASE}/runs/{run.pk}/outputs/", outputs()[:1], format="json")
    assert posted.status_code == 404
    assert api.post(f"{BASE}/runs/{run.pk}/cancel/", {}, format="json").status_code == 404
    # Hidden answers like missing, word for word.
    hidden = api.get(f"{BASE}/runs/{run.pk}/results/")
    assert hidden.json() == api.get(f"{BASE}/runs/999999/results/").json()


def test_the_ci_gate_runs_the_suite_and_reads_only_its_own_verdict(
    ci_key, hidden_suite, support_prompt, run, django_capture_on_commit_callbacks
):
    api = _key_client(ci_key)
    with django_capture_on_commit_callbacks(execute=True):
        started = api.post(
            f"{BASE}/runs/",
            {
                "suite": hidden_suite.slug,
                "prompt": support_prompt.slug,
                "version": 2,
                "outputs": outputs(),
            },
            format="json",
        )
    assert started.status_code == 201, started.json()
    mine = started.json()["id"]
    verdict = api.get(f"{BASE}/runs/{mine}/verdict/")
    assert verdict.status_code in (200, 422) and verdict.json()["status"] == "completed"
    assert Run.objects.get(pk=mine).created_by.username == "ci-pipeline"
    for path in _run_reads(mine):
        response = api.get(path)
        assert response.status_code == 200, path
        _absent(response.content)
    listing = api.get(f"{BASE}/runs/").json()
    assert [r["id"] for r in listing["results"]] == [mine]  # not Olivia's run
    assert api.get(f"{BASE}/runs/{run.pk}/").status_code == 404


def test_the_ci_gate_still_posts_outputs_to_its_own_waiting_run(
    ci_key, hidden_suite, support_prompt, django_capture_on_commit_callbacks
):
    api = _key_client(ci_key)
    run = api.post(
        f"{BASE}/runs/",
        {"suite": hidden_suite.slug, "prompt": support_prompt.slug, "version": 2},
        format="json",
    ).json()
    assert run["status"] == "awaiting_outputs"
    assert api.get(f"{BASE}/runs/{run['id']}/verdict/").status_code == 202
    with django_capture_on_commit_callbacks(execute=True):
        posted = api.post(f"{BASE}/runs/{run['id']}/outputs/?complete=1", outputs(), format="json")
    assert posted.status_code == 200 and posted.json()["posted"] == 24
    assert api.get(f"{BASE}/runs/{run['id']}/verdict/").json()["status"] == "completed"


# --- the one decision --------------------------------------------------------------------------


def test_case_fields_visible_is_the_dataset_view_right(
    owner, reader, compliance, outsider, hidden_dataset, run
):
    assert permissions.case_fields_visible(owner, hidden_dataset)
    assert permissions.case_fields_visible(compliance, hidden_dataset)
    assert not permissions.case_fields_visible(reader, hidden_dataset)
    assert not permissions.case_fields_visible(outsider, hidden_dataset)
    assert selectors.run_case_fields_visible(owner, run)
    assert not selectors.run_case_fields_visible(reader, run)


def test_masking_takes_every_hidden_value_out_of_a_text(run):
    case = run.dataset_version.cases.get(external_id="c1")
    text = f"echo: {case.expected} | {case.contexts[0]} | {case.variables['message']} | de"
    out = selectors.masked(text, case)
    for marker in MARKERS:
        assert marker not in out
    assert out.endswith("| de")  # short values are left alone
    assert selectors.masked("", case) == ""
