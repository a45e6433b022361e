"""Hostile text in every free-text field is shown as text, never run as markup, template or
spreadsheet formula, and comes back from the API exactly as it was typed.

One workspace (tests/hostile/workspace.py) is built per module with the payload in every
text field a person or an integration can fill; the field list is read from the models, so a
new text field fails `test_every_text_field_holds_the_payload` until the workspace fills it
or the exclusion list below says why it need not.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.contrib import admin
from django.db import models, transaction
from django.test import Client, override_settings
from django.urls import reverse

from apps.core import csvsafe
from apps.evaluations import generation
from tests.hostile import workspace
from tests.hostile.workspace import (
    ESCAPED_SCRIPT,
    EVALUATED,
    RAW_MARKUP,
    SCRIPT,
    TINY,
)

pytestmark = pytest.mark.django_db

# Text fields that hold nothing a person typed, or nothing any page shows (model label,
# field name). Every other CharField, TextField and JSONField of the project's models (and
# the user's names) must hold the payload in the workspace.
EXCLUDED = {
    # Passwords, login names and addresses are validated; keys are generated secrets.
    ("auth.User", "password"),
    ("auth.User", "username"),
    ("auth.User", "email"),
    ("core.ApiKey", "id"),
    ("core.ApiKey", "prefix"),
    ("core.ApiKey", "hashed_key"),
    # Written by the code: verbs from a registry, links, dedupe keys, hashes.
    ("core.Notification", "verb"),
    ("core.Notification", "url"),
    ("core.Notification", "dedupe_key"),
    ("core.AuditEvent", "verb"),
    ("core.AuditEvent", "actor_name"),  # the username
    ("core.AuditEvent", "object_type"),
    ("core.AuditEvent", "object_id"),
    ("core.AuditEvent", "prev_hash"),
    ("core.AuditEvent", "hash"),
    ("core.AuditHead", "last_hash"),
    ("prompts.PromptVersion", "content_hash"),
    ("prompts.PolicyRule", "risk_levels"),  # a list of risk-level choices
    ("prompts.PolicyFinding", "location"),  # "messages[0] (system)", from validated roles
    ("prompts.LabelMove", "label"),  # label names are slugs
    ("prompts.Consumer", "label"),
    ("evaluations.DatasetVersion", "source_format"),  # jsonl or csv
    ("evaluations.DatasetVersion", "sha256"),
    ("evaluations.ModelArtifact", "sha256"),
    ("evaluations.ModelArtifact", "tokenizer_sha256"),
    ("evaluations.ModelArtifact", "pooling"),  # validated: mean, cls, max
    ("evaluations.ModelArtifact", "storage_dir"),
    ("evaluations.ModelArtifact", "agreement"),  # measured numbers
    ("evaluations.Threshold", "metric"),  # must name one of the suite's metrics
    ("evaluations.Run", "content_hash"),
    ("evaluations.Run", "scorer_artifacts"),  # slug → sha256
    ("evaluations.Run", "comparison"),  # computed numbers
    ("evaluations.Run", "error"),  # the runner's own message
    ("evaluations.RunBatch", "error"),
    ("evaluations.CaseResult", "metrics"),  # scores
    ("evaluations.CaseResult", "error"),  # the scorer's own message
    ("approvals.ApprovalRequest", "label"),  # a label name
    ("approvals.ApprovalRequest", "transition"),  # a transition name
    ("approvals.ApprovalRequest", "risk_tier"),  # a copy of a choice
    ("approvals.Decision", "roles"),  # R/A/C/I codes
    ("approvals.RaciGrant", "codename"),  # permission codenames
    ("core.AuditCheckpoint", "head_hash"),  # computed: a sha256
    ("core.AuditCheckpoint", "database"),  # the server's own database name
    ("core.AuditCheckpoint", "key_id"),  # computed from the signing key
    ("core.AuditCheckpoint", "seals"),  # computed digests of dataset versions
    ("core.AuditCheckpoint", "signature"),  # computed: an HMAC
    ("registry.ModelEndpoint", "base_url"),  # a URL checked by the egress rules
    ("registry.ModelEndpoint", "slug"),  # a slug
    ("registry.ModelEndpoint", "provider_kind"),  # a choice
    ("registry.ModelEndpoint", "data_location"),  # a choice
    ("registry.ModelEndpoint", "training_use"),  # a choice
    ("registry.ModelEndpoint", "status"),  # a choice
    ("registry.ModelEndpoint", "risk_tiers"),  # tier codes
    ("gateway.Call", "label"),  # an existing label's name
    ("gateway.Call", "status"),  # ok, flagged, …
    ("gateway.OnlineScore", "metrics"),  # scores
    ("gateway.OnlineScore", "suite_slug"),
    ("gateway.OnlineScore", "error"),  # the scorer's own message
}
# History rows copy their model's fields (and its exclusions). Their change reason is the
# service's own words, except where it quotes a reason the user typed:
REASONS_QUOTED = {"charters.HistoricalCharter", "prompts.HistoricalPrompt"}


@pytest.fixture(scope="module")
def ws(django_db_setup, django_db_blocker, tmp_path_factory):
    """The hostile workspace, in a transaction each test's savepoint nests in; rolled back."""
    from aifactory.celery import app

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    with (
        django_db_blocker.unblock(),
        override_settings(
            PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"],
            EMAIL_BACKEND="django.core.mail.backends.locmem.EmailBackend",
            MEDIA_ROOT=str(tmp_path_factory.mktemp("hostile-media")),
        ),
    ):
        atomic = transaction.atomic()
        atomic.__enter__()
        try:
            yield workspace.build()
        finally:
            app.conf.task_always_eager = eager
            transaction.set_rollback(True)
            atomic.__exit__(None, None, None)


def _as(ws, persona: str) -> Client:
    client = Client()
    client.force_login(ws.users[persona])
    return client


def _text_fields():
    """(model, field) for every free-text field of the project's models and the user's names."""
    for model in apps.get_models():
        label = model._meta.label
        if not (model.__module__.startswith("apps.") or label == "auth.User"):
            continue
        base = getattr(model, "instance_type", None)  # a simple-history model's original
        for field in model._meta.concrete_fields:
            if not isinstance(field, models.CharField | models.TextField | models.JSONField):
                continue
            if field.choices or isinstance(field, models.SlugField):
                continue  # picked from a list or validated as a slug
            if field.name == "history_change_reason" and label not in REASONS_QUOTED:
                continue
            if (base._meta.label if base else label, field.name) in EXCLUDED:
                continue
            yield model, field


def _holds_payload(value, max_length) -> bool:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return "<script>alert(" in text or (
        max_length is not None and max_length < len(SCRIPT) and TINY in text
    )


def test_every_text_field_holds_the_payload(ws):
    missing = []
    checked = 0
    for model, field in _text_fields():
        checked += 1
        values = model._default_manager.values_list(field.attname, flat=True)
        if not any(_holds_payload(v, field.max_length) for v in values if v is not None):
            missing.append(f"{model._meta.label}.{field.name}")
    assert not missing, (
        "These text fields hold no hostile text in tests/hostile/workspace.py: fill them there, "
        f"or add them to EXCLUDED with the reason no page shows what a user typed: {missing}"
    )
    assert checked > 100


# --- web pages ----------------------------------------------------------------------------

Q = "?q=" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E%22%3E%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E"


@dataclass(frozen=True)
class Page:
    persona: str
    url: str
    status: int = 200
    shows_text: bool = True  # False: a page about the objects that quotes none of their text


def _pages(ws) -> list[Page]:
    """Every web page over the workspace, as the persona who would open it."""
    charter, prompt, dataset = ws["charter"], ws["prompt"], ws["dataset"]
    p = f"/prompts/{prompt.slug}"
    d = f"/evaluations/datasets/{dataset.slug}"
    return [
        Page("owner", "/charters/"),
        Page("compliance", "/charters/?scope=all"),
        Page("owner", "/charters/new/"),
        Page("owner", f"/charters/{charter.slug}/"),
        Page("compliance", f"/charters/{charter.slug}/"),
        Page("owner", f"/charters/{ws['draft'].slug}/"),
        Page("owner", f"/charters/{ws['draft'].slug}/edit/"),
        Page("owner", f"/charters/{charter.slug}/edit/", 409),  # a pilot is not editable
        Page("owner", "/prompts/"),
        Page("owner", "/prompts/?tab=mine"),
        Page("owner", "/prompts/" + Q),
        Page("owner", "/prompts/new/"),
        Page("owner", f"{p}/"),
        Page("owner", f"{p}/edit/"),
        Page("owner", f"{p}/diff/?from=1&to=2"),
        Page("owner", f"{p}/diff/?from=2&to=4"),
        Page("owner", f"{p}/versions/new/"),
        *(Page("owner", f"{p}/versions/{n}/") for n in (1, 2, 3, 4)),
        Page("compliance", f"{p}/versions/1/"),
        Page("owner", f"{p}/versions/4/edit/"),
        Page("owner", "/evaluations/"),
        Page("owner", "/evaluations/datasets/"),
        Page("owner", "/evaluations/datasets/new/"),
        Page("owner", f"{d}/"),
        Page("owner", f"{d}/v1/"),
        Page("owner", "/evaluations/models/"),
        Page("owner", f"/evaluations/models/{ws['artifact'].slug}/"),
        Page("owner", "/evaluations/suites/new/"),
        Page("owner", f"/evaluations/suites/{ws['suite'].slug}/"),
        Page("owner", f"/evaluations/suites/{ws['suite'].slug}/edit/"),
        Page("owner", f"/evaluations/runs/{ws['run'].pk}/"),
        Page("compliance", "/approvals/", 200, False),  # subjects there are slugs
        Page("owner", "/approvals/"),
        *(
            Page("compliance", f"/approvals/{ws[name].pk}/")
            for name in ("promotion", "go_live", "threshold_change")
        ),
        Page("owner", f"/approvals/{ws['promotion'].pk}/"),
        Page("owner", f"/approvals/raci/{charter.slug}/"),
        Page("compliance", "/approvals/audit/"),
        Page("compliance", f"/approvals/audit/?charter={charter.slug}"),
        Page("compliance", "/approvals/audit/" + Q.replace("q=", "actor=")),
        Page("owner", "/scorecards/"),
        Page("owner", "/scorecards/" + Q.replace("q=", "status="), 200, False),  # filters all out
        Page("owner", f"/scorecards/{charter.slug}/"),
        Page("owner", "/inbox/"),
        Page("compliance", "/inbox/"),
        Page("owner", "/registry/"),
        Page("owner", "/registry/" + Q.replace("q=", "status="), 200, False),  # ignored filter
        Page("owner", f"/registry/{ws['endpoint'].slug}/"),
        Page("engineer", f"/registry/{ws['endpoint'].slug}/"),
    ]


def _assert_inert_html(body: str, where: str, *, shown: bool = True) -> None:
    for raw in RAW_MARKUP:
        assert raw not in body, f"{where}: unescaped {raw!r}"
    for evaluated in EVALUATED:
        assert evaluated not in body, f"{where}: template syntax evaluated ({evaluated!r})"
    if shown:
        assert ESCAPED_SCRIPT in body, f"{where}: the hostile text is not shown at all"


def test_web_pages_show_the_payload_escaped(ws):
    failures = []
    for page in _pages(ws):
        response = _as(ws, page.persona).get(page.url)
        where = f"{page.url} as {page.persona}"
        if response.status_code != page.status:
            failures.append(f"{where}: {response.status_code}")
            continue
        try:
            _assert_inert_html(response.content.decode(), where, shown=page.shows_text)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


def _element(body: str, element_id: str) -> str:
    """The text of the element with `element_id`, up to its closing tag."""
    start = body.index(f'id="{element_id}"')
    tag = body.rindex("<", 0, start)
    name = body[tag + 1 : start].split()[0]
    return body[start : body.index(f"</{name}>", start)]


def test_model_registry_shows_the_endpoint_text_escaped_and_keeps_its_credential(ws):
    """The registry's pages, its admin (as the operator who keeps it) and its API show each
    text an operator typed about an endpoint escaped, or verbatim in JSON; the name of its
    credential is the stewards' business only; the run page shows the endpoint it recorded."""
    endpoint = ws["endpoint"]
    tag = workspace.CREDENTIAL_TAG
    failures = []
    reads = [
        ("owner", "/registry/", ("name", "vendor", "region")),
        ("owner", f"/registry/{endpoint.slug}/", ("name", "description", "vendor", "terms")),
        ("owner", f"/api/v1/registry/endpoints/{endpoint.slug}/", ("status_reason",)),
        ("engineer", "/admin/registry/modelendpoint/", ("name", "credential")),
        ("engineer", f"/admin/registry/modelendpoint/{endpoint.pk}/change/", ("credential",)),
        ("engineer", f"/admin/registry/modelendpoint/{endpoint.pk}/history/", ()),
    ]
    for persona, url, fields in reads:
        response = _as(ws, persona).get(url, HTTP_ACCEPT="application/json")
        where = f"{url} as {persona}"
        if response.status_code != 200:
            failures.append(f"{where}: {response.status_code}")
            continue
        body = response.content.decode()
        if url.startswith("/api/"):
            data = response.json()
            _assert_verbatim_json(data, where)
            for name in ("name", "description", "vendor", "region", "terms", "status_reason"):
                if data[name] != getattr(endpoint, name):
                    failures.append(f"{where}: {name} not as typed")
            if data["model_names"] != endpoint.model_names or "credential" in data:
                failures.append(f"{where}: model names changed or the credential shown")
        else:
            try:
                _assert_inert_html(body, where, shown=bool(fields))
            except AssertionError as exc:
                failures.append(str(exc))
        shown = "credential" in fields
        if (tag in body) != shown:
            failures.append(f"{where}: the credential's name {'missing' if shown else 'shown'}")
    run = _as(ws, "owner").get(f"/evaluations/runs/{ws['run'].pk}/").content.decode()
    paragraph = _element(run, "run-endpoint")
    _assert_inert_html(paragraph, "the run's endpoint")
    for snapshot_tag in (workspace.SNAPSHOT_NAME_TAG, workspace.SNAPSHOT_VENDOR_TAG):
        if snapshot_tag not in paragraph:
            failures.append(f"the run page does not show the endpoint's {snapshot_tag!r}")
    if f'href="/registry/{endpoint.slug}/"' not in paragraph:
        failures.append("the run page does not link the endpoint")
    assert not failures, "\n".join(failures)


def test_forms_and_messages_quoting_the_payload_are_escaped(ws):
    """Forms sent back with errors keep the typed text in their inputs; the messages after an
    action quote names: both escaped."""
    owner = _as(ws, "owner")
    # A consulted reviewer comments on the go-live request: the page shows the comment.
    comment = {"verdict": "comment", "comment": workspace.CORE}
    shown = _as(ws, "reviewer").post(f"/approvals/{ws['go_live'].pk}/", comment, follow=True)
    assert shown.status_code == 200
    assert ws["go_live"].decisions.filter(comment=workspace.CORE).exists()
    _assert_inert_html(shown.content.decode(), "approval comment")
    posts = [
        # A charter form missing its sections comes back with what was typed.
        ("/charters/new/", {"title": workspace.CORE, "problem": workspace.LONG}),
        # Submitting the incomplete draft lists what is missing, naming its metrics.
        (f"/charters/{ws['draft'].slug}/transition/submit/", {}),
        # A fork is announced by its (hostile) name.
        (
            f"/prompts/{ws['prompt'].slug}/fork/",
            {"charter": ws["charter"].pk, "name": workspace.text(200, " fork")},
        ),
    ]
    failures = []
    for url, data in posts:
        with transaction.atomic():
            response = owner.post(url, data, follow=True)
            transaction.set_rollback(True)
        where = f"POST {url}"
        if response.status_code != 200:
            failures.append(f"{where}: {response.status_code}")
            continue
        try:
            _assert_inert_html(response.content.decode(), where)
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n".join(failures)


# --- admin ------------------------------------------------------------------------------------


def _admin_models():
    for model, model_admin in admin.site._registry.items():
        if model.__module__.startswith("apps.") or model._meta.label == "auth.User":
            yield model, model_admin


def _hostile_rows(model, limit: int = 3) -> list:
    """Rows of `model` that hold the payload in some text field (or any, if none does)."""
    fields = [
        f.attname
        for f in model._meta.concrete_fields
        if isinstance(f, models.CharField | models.TextField | models.JSONField)
    ]
    rows = list(model._default_manager.order_by("pk")[:200])
    hostile = [
        r for r in rows if any(_holds_payload(getattr(r, f), None) for f in fields if getattr(r, f))
    ]
    return (hostile or rows)[:limit]


# Admin pages that show no object text: names of labels and consumers are slugs, and the
# user pages show people's names (alert(2)). History pages list the services' reasons.
ADMIN_SHOWS_NO_TEXT = {"auth.User", "prompts.Label", "prompts.Consumer"}


def test_admin_pages_show_the_payload_escaped(ws):
    failures = []
    for persona in ("admin", "compliance"):
        client = _as(ws, persona)
        for model, _ in _admin_models():
            info = f"admin:{model._meta.app_label}_{model._meta.model_name}"
            shows = model._meta.label not in ADMIN_SHOWS_NO_TEXT
            changelist = reverse(f"{info}_changelist")
            urls = [(changelist, shows)]
            if persona == "admin":  # the forms and the search box are the same for both
                urls += [(changelist + Q, False), (f"{changelist}add/", False)]
            for row in _hostile_rows(model, limit=2):
                urls.append((reverse(f"{info}_change", args=[row.pk]), shows))
                urls.append((reverse(f"{info}_history", args=[row.pk]), False))
                if model._meta.label == "prompts.PromptVersion":
                    urls.append((f"{changelist}{row.pk}/diff/?against=1", True))
            for url, shown in urls:
                response = client.get(url)
                where = f"{url} as {persona}"
                if response.status_code == 403 and url.endswith("/add/"):
                    continue  # made through the services only
                if response.status_code in (302, 403, 404) and persona != "admin":
                    continue  # scoped away from compliance
                if response.status_code != 200:
                    failures.append(f"{where}: {response.status_code}")
                    continue
                try:
                    _assert_inert_html(response.content.decode(), where, shown=shown)
                except AssertionError as exc:
                    failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_admin_actions_report_hostile_objects_escaped(ws, rf):
    """Actions list the chosen objects (asking for a reason) and report each outcome by name."""
    failures, ran = [], 0
    client = _as(ws, "admin")
    request = rf.get("/admin/")
    request.user = ws.users["admin"]
    for model, model_admin in _admin_models():
        rows = _hostile_rows(model, limit=1)
        changelist = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        for name in model_admin.get_actions(request):
            if name == "delete_selected" or not rows:
                continue
            ran += 1
            chosen = {"action": name, "_selected_action": [rows[0].pk], "index": 0}
            with transaction.atomic():
                response = client.post(changelist, chosen, follow=True)
                if 'name="reason"' in response.content.decode():  # it asks why first
                    reason = {**chosen, "apply": "1", "reason": workspace.CORE}
                    response = client.post(changelist, reason, follow=True)
                transaction.set_rollback(True)
            where = f"{changelist} action {name}"
            if response.status_code != 200:
                failures.append(f"{where}: {response.status_code}")
                continue
            try:
                _assert_inert_html(response.content.decode(), where, shown=False)
            except AssertionError as exc:
                failures.append(str(exc))
    assert ran >= 5
    assert not failures, "\n".join(failures)


# --- API ------------------------------------------------------------------------------------


def _api_gets(ws) -> list[tuple[str, str]]:
    """(persona, url) for every API read over the workspace's objects."""
    charter, prompt, dataset, suite, run = (
        ws["charter"],
        ws["prompt"],
        ws["dataset"],
        ws["suite"],
        ws["run"],
    )
    api = "/api/v1"
    p = f"{api}/prompts/{prompt.slug}"
    return [
        ("owner", f"{api}/me/"),
        ("owner", f"{api}/notifications/"),
        ("compliance", f"{api}/notifications/"),
        ("owner", f"{api}/charters/"),
        ("owner", f"{api}/charters/{charter.slug}/"),
        ("owner", f"{api}/charters/{ws['draft'].slug}/"),
        ("owner", f"{api}/charters/{charter.slug}/access/"),
        ("owner", f"{api}/metrics/"),
        ("owner", f"{api}/metrics/{ws['metric'].pk}/"),
        ("owner", f"{api}/prompts/"),
        ("owner", f"{p}/"),
        ("owner", f"{p}/labels/"),
        ("owner", f"{p}/versions/"),
        ("owner", f"{p}/diff/?from=1&to=2"),
        *(("owner", f"{p}/versions/{n}/") for n in (1, 2, 3, 4)),
        ("owner", f"{p}/versions/1/findings/"),
        ("owner", f"{p}/resolve"),
        ("owner", f"{p}/resolve?label=staging"),
        ("engineer", f"{api}/applications/"),
        ("engineer", f"{api}/applications/{ws['application'].slug}/"),
        ("engineer", f"{api}/applications/{ws['application'].slug}/keys/"),
        ("engineer", f"{api}/applications/{ws['application'].slug}/consumptions/"),
        ("owner", f"{api}/evaluations/datasets/"),
        ("owner", f"{api}/evaluations/datasets/{dataset.slug}/"),
        ("owner", f"{api}/evaluations/datasets/{dataset.slug}/versions/"),
        ("owner", f"{api}/evaluations/datasets/{dataset.slug}/versions/1/cases/"),
        ("owner", f"{api}/evaluations/artifacts/"),
        ("owner", f"{api}/evaluations/artifacts/{ws['artifact'].slug}/"),
        ("owner", f"{api}/evaluations/suites/"),
        ("owner", f"{api}/evaluations/suites/{suite.slug}/"),
        ("owner", f"{api}/evaluations/suites/{suite.slug}/thresholds/"),
        ("owner", f"{api}/evaluations/runs/"),
        ("owner", f"{api}/evaluations/runs/{run.pk}/"),
        ("owner", f"{api}/evaluations/runs/{run.pk}/results/"),
        ("owner", f"{api}/evaluations/runs/{run.pk}/verdict/"),
        ("owner", f"{api}/charters/{charter.slug}/raci/"),
        ("compliance", f"{api}/audit/"),
        ("compliance", f"{api}/audit/?charter={charter.slug}"),
        ("compliance", f"{api}/approvals/requests/"),
        *(
            ("compliance", f"{api}/approvals/requests/{ws[name].pk}/")
            for name in ("promotion", "go_live", "threshold_change")
        ),
        ("owner", f"{api}/charters/{charter.slug}/scorecard/"),
        ("owner", f"{api}/portfolio/"),
        ("owner", f"{api}/registry/endpoints/"),
        ("owner", f"{api}/registry/endpoints/{ws['endpoint'].slug}/"),
        ("engineer", f"{api}/registry/endpoints/{ws['endpoint'].slug}/"),
    ]


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


def _assert_verbatim_json(data, where: str) -> None:
    texts = list(_strings(data))
    assert any("<script>alert(" in t for t in texts), f"{where}: no hostile text, as typed"
    for t in texts:
        assert "&lt;" not in t and "&quot;" not in t, f"{where}: text came back HTML-escaped"
        for evaluated in EVALUATED:
            assert evaluated not in t, f"{where}: template syntax evaluated"


# API reads that show no typed text: who may see a charter, by username; consumptions name
# prompts and labels by slug.
API_SHOWS_NO_TEXT = {
    "/api/v1/charters/hostile/access/",
    "/api/v1/applications/hostile-app/consumptions/",
}


def test_api_returns_the_text_verbatim_and_the_browsable_api_escapes_it(ws):
    failures = []
    for persona, url in _api_gets(ws):
        client = _as(ws, persona)
        where = f"GET {url} as {persona}"
        response = client.get(url, HTTP_ACCEPT="application/json")
        if response.status_code != 200:
            failures.append(f"{where}: {response.status_code}")
            continue
        try:
            data = response.json()
            if url not in API_SHOWS_NO_TEXT:
                _assert_verbatim_json(data, where)
        except (AssertionError, ValueError) as exc:
            failures.append(str(exc))
        browsable = client.get(url, HTTP_ACCEPT="text/html")
        if browsable["Content-Type"].startswith("text/html"):
            try:
                _assert_inert_html(browsable.content.decode(), f"{where} (browsable)", shown=False)
            except AssertionError as exc:
                failures.append(str(exc))
    assert not failures, "\n".join(failures)


def test_api_keeps_each_field_as_typed(ws):
    """Stored as given, returned as stored: no stripping of markup, no escaping."""
    client = _as(ws, "owner")
    charter = client.get(f"/api/v1/charters/{ws['charter'].slug}/").json()
    assert charter["title"] == ws["charter"].title == workspace.text(200)
    assert charter["problem"] == workspace.LONG
    version = client.get(f"/api/v1/prompts/{ws['prompt'].slug}/versions/1/").json()
    assert version["messages"] == ws["v1"].messages
    assert version["variables"][0]["description"] == workspace.LONG
    assert version["model_config"]["x-note"] == workspace.LONG
    cases = client.get(
        f"/api/v1/evaluations/datasets/{ws['dataset'].slug}/versions/1/cases/"
    ).json()
    first = cases["results"][0] if isinstance(cases, dict) else cases[0]
    assert first["variables"]["context"] == workspace.LONG
    request = _as(ws, "compliance").get(f"/api/v1/approvals/requests/{ws['promotion'].pk}/")
    assert request.json()["reason"] == workspace.LONG


# --- exports --------------------------------------------------------------------------------


def _csv_rows(response) -> list[list[str]]:
    assert response.status_code == 200, response.status_code
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    return list(csv.reader(io.StringIO(response.content.decode())))


@pytest.mark.parametrize(
    ("persona", "url"),
    [
        ("owner", "/approvals/evidence/hostile.csv"),
        ("compliance", "/api/v1/charters/hostile/evidence/?as=csv"),
        ("owner", "/scorecards/?as=csv"),
        ("compliance", "/api/v1/portfolio/?as=csv"),
    ],
)
def test_csv_exports_neutralise_formulas(ws, persona, url):
    rows = _csv_rows(_as(ws, persona).get(url))
    cells = [cell for row in rows for cell in row]
    live = [c for c in cells if c.startswith(csvsafe.FORMULA_STARTS)]
    assert not live, f"cells a spreadsheet would run: {live[:3]}"
    assert any(c.startswith("'" + workspace.FORMULA) for c in cells), "no hostile cell exported"
    # Neutralised, not rewritten: the apostrophe is the only change.
    assert any(c[1:].startswith(workspace.CORE) for c in cells if c.startswith("'"))


@pytest.mark.parametrize("start", ["=", "+", "-", "@", "\t", "\r"])
def test_csvsafe_neutralises_every_formula_start(start):
    assert csvsafe.cell(f"{start}1+1") == f"'{start}1+1"
    assert csvsafe.row([f"{start}cmd", 3, -2.5, "plain"]) == [f"'{start}cmd", 3, -2.5, "plain"]


@pytest.mark.parametrize(
    "url",
    [
        "/evaluations/datasets/hostile-cases/v1/export/",
        "/api/v1/evaluations/datasets/hostile-cases/versions/1/export/",
    ],
)
def test_jsonl_export_is_valid_json_with_the_text_verbatim(ws, url):
    response = _as(ws, "owner").get(url)
    assert response.status_code == 200
    assert response["Content-Disposition"].startswith("attachment;")
    body = b"".join(response.streaming_content) if response.streaming else response.content
    lines = body.decode().splitlines()
    assert len(lines) == 4
    rows = [json.loads(line) for line in lines]
    cases = ws["dataset_version"].cases.order_by("position")
    for row, case in zip(rows, cases, strict=True):
        assert row["id"] == case.external_id == workspace.text(200, f" c{case.position - 1}")
        assert row["variables"] == {"context": workspace.LONG}
        assert row["expected"] == workspace.LONG and row["contexts"] == [workspace.LONG]
        assert row["segments"] == case.segments and row["tags"] == case.tags


@pytest.mark.parametrize(
    "url", ["/approvals/evidence/hostile.json", "/api/v1/charters/hostile/evidence/?as=json"]
)
def test_json_evidence_pack_carries_the_text_verbatim(ws, url):
    response = _as(ws, "compliance").get(url)
    assert response.status_code == 200
    data = json.loads(response.content)
    _assert_verbatim_json(data, url)
    assert data["charter"]["title"] == ws["charter"].title
    reasons = [a["reason"] for a in data["approvals"]]
    assert workspace.LONG in reasons


# --- template injection ---------------------------------------------------------------------

# Template syntax of Django, Jinja and Python that walks attributes, loads tags or reads
# settings: refused in a template, inert in a value.
INJECTIONS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ context.__class__.__mro__[1].__subclasses__() }}",
    "{{ settings.SECRET_KEY }}",
    "{{ request.user.password }}",
    "{{ context|safe }}",
    "{{ lipsum.__globals__.os.popen('id').read() }}",
    "{% load static %}",
    "{% debug %}",
    "{# hidden #}",
    "{{ 7*7 }}",
]
# Other engines' syntax is plain text in ours: kept as typed, never formatted.
FOREIGN = "{0.__class__.__mro__} {context} %(context)s ${context} #{context} <%= context %>"


def _version_payload(text: str, example: str = "example") -> dict:
    return {
        "template_kind": "text",
        "text": text,
        "variables": [{"name": "context", "required": True, "example": example}],
        "model_config": {"model": "support-chat-v1"},
        "release_notes": "Injection attempt.",
        "change_kind": "patch",
    }


def _leaks(body: str) -> list[str]:
    from django.conf import settings

    return [
        marker
        for marker in (settings.SECRET_KEY, "<class ", "__subclasses__ of", "uid=", ">49<")
        if marker in body
    ]


@pytest.mark.parametrize("injection", INJECTIONS)
def test_template_syntax_beyond_placeholders_is_refused_at_save(ws, injection):
    prompt = ws["prompt"]
    count = prompt.versions.count()
    response = _as(ws, "owner").post(
        f"/api/v1/prompts/{prompt.slug}/versions/",
        _version_payload(f"Answer from {{{{ context }}}}. {injection}"),
        content_type="application/json",
    )
    assert response.status_code == 400, response.content
    problems = " ".join(response.json()["errors"]["template"])
    assert "line 1, column" in problems  # says where
    assert any(
        phrase in problems
        for phrase in ("not supported", "Only plain variable names", "not a valid variable")
    ), problems
    assert prompt.versions.count() == count
    assert not _leaks(response.content.decode())


def test_web_version_form_refuses_injection_and_shows_it_escaped(ws):
    prompt = ws["prompt"]
    count = prompt.versions.count()
    form = {
        "template_kind": "text",
        "text": "Answer from {{ context }}. " + " ".join(INJECTIONS) + workspace.SCRIPT,
        "model_config": "{}",
        "release_notes": "Injection attempt.",
        "change_kind": "patch",
        "messages-TOTAL_FORMS": "0",
        "messages-INITIAL_FORMS": "0",
        "variables-TOTAL_FORMS": "1",
        "variables-INITIAL_FORMS": "0",
        "variables-0-name": "context",
        "variables-0-required": "on",
        "variables-0-example": "x",
    }
    client = _as(ws, "owner")
    for button in ("check", "save"):
        response = client.post(f"/prompts/{prompt.slug}/versions/new/", {**form, button: "1"})
        assert response.status_code == 200
        body = response.content.decode()
        _assert_inert_html(body, f"version form ({button})")
        assert "are not supported" in body and not _leaks(body)
    assert prompt.versions.count() == count


def test_values_with_template_syntax_render_inertly(ws):
    """A placeholder's value is substituted as text, once: never parsed, formatted or run."""
    prompt = ws["prompt"]
    owner = _as(ws, "owner")
    value = " ".join(INJECTIONS) + " " + FOREIGN + " " + workspace.CORE
    created = owner.post(
        f"/api/v1/prompts/{prompt.slug}/versions/",
        _version_payload(FOREIGN + " {{ context }}", example=value),
        content_type="application/json",
    )
    assert created.status_code == 201, created.content
    number = created.json()["number"]
    rendered = owner.post(
        f"/api/v1/prompts/{prompt.slug}/render",
        {"version": number, "variables": {"context": value}},
        content_type="application/json",
    )
    assert rendered.status_code == 200, rendered.content
    assert rendered.json()["text"] == FOREIGN + " " + value
    assert not _leaks(rendered.content.decode())
    # The web preview renders the same way, with the example, escaped.
    preview = owner.post(
        f"/prompts/{prompt.slug}/versions/{number}/edit/",
        {
            "template_kind": "text",
            "text": FOREIGN + " {{ context }}",
            "model_config": "{}",
            "release_notes": "Injection attempt.",
            "change_kind": "patch",
            "messages-TOTAL_FORMS": "0",
            "messages-INITIAL_FORMS": "0",
            "variables-TOTAL_FORMS": "1",
            "variables-INITIAL_FORMS": "1",
            "variables-0-name": "context",
            "variables-0-required": "on",
            "variables-0-example": value,
            "check": "1",
        },
    )
    body = preview.content.decode()
    assert preview.status_code == 200 and 'id="preview"' in body
    _assert_inert_html(body, "web preview")
    assert "{{ &#x27;&#x27;.__class__.__mro__ }}" in body and not _leaks(body)


def test_very_long_and_control_character_variables_render_safely(ws):
    version = ws["v2"]
    hostile = "{{ ''.__class__ }}\x00\x1b[31m" + "A" * 100_000
    messages = generation.build_messages(
        version.template_kind,
        version.messages,
        version.text,
        version.variables,
        {"context": hostile},
    )
    assert hostile in messages[0]["content"]  # substituted as text, not run
    with pytest.raises(generation.RenderError) as refused:
        generation.build_messages(
            version.template_kind,
            version.messages,
            version.text,
            version.variables,
            {"context": "A" * 300_000},
        )
    assert refused.value.variables == ["context"] and "longer than" in str(refused.value)


# --- characters the database cannot store -------------------------------------------------

NUL = "a\x00b"


def _nul_requests(ws) -> list[tuple[str, str, str, dict | None]]:
    """(persona, method, url, JSON body) that carry a NUL character where text is free."""
    prompt, charter = ws["prompt"], ws["charter"]
    version = {**_version_payload("Answer {{ context }}"), "release_notes": "NUL probe"}
    return [
        ("owner", "get", "/prompts/?q=" + NUL, None),
        ("owner", "get", "/charters/?q=" + NUL, None),
        ("compliance", "get", f"/approvals/audit/?actor={NUL}&verb={NUL}&object_id={NUL}", None),
        ("owner", "get", "/scorecards/?status=" + NUL, None),
        ("compliance", "get", f"/api/v1/audit/?actor={NUL}&object_type={NUL}", None),
        ("owner", "get", "/api/v1/prompts/?search=" + NUL, None),
        ("owner", "get", "/api/v1/charters/?search=" + NUL, None),
        ("owner", "get", f"/api/v1/prompts/?q={NUL}&tag={NUL}&owner={NUL}", None),
        ("owner", "get", f"/api/v1/charters/?q={NUL}&owner={NUL}", None),
        ("owner", "get", f"/api/v1/prompts/{prompt.slug}/resolve?label={NUL}", None),
        ("owner", "get", "/api/v1/evaluations/runs/?suite=" + NUL, None),
        ("owner", "get", f"/api/v1/evaluations/runs/{ws['run'].pk}/results/?segment={NUL}", None),
        ("owner", "get", f"/prompts/new/?charter={NUL}", None),
        (
            "owner",
            "delete",
            f"/api/v1/charters/{charter.slug}/raci/{ws['charter'].raci.first().pk}/?reason={NUL}",
            None,
        ),
        ("admin", "get", "/admin/charters/charter/?q=" + NUL, None),
        ("admin", "get", "/admin/core/auditevent/?q=" + NUL, None),
        ("owner", "get", f"/registry/?status={NUL}&data_location={NUL}", None),
        ("owner", "get", f"/api/v1/registry/endpoints/?vendor={NUL}&status={NUL}", None),
        ("engineer", "get", "/admin/registry/modelendpoint/?q=" + NUL, None),
        (
            "engineer",
            "post",
            "/api/v1/registry/endpoints/",
            {
                "name": NUL,
                "base_url": "http://10.0.0.5/v1" + NUL,
                "vendor": NUL,
                "model_names": [NUL],
                "allow_private": True,
                "allow_private_reason": NUL,
            },
        ),
        (
            "engineer",
            "patch",
            f"/api/v1/registry/endpoints/{ws['endpoint'].slug}/",
            {"description": NUL, "terms": NUL, "reason": NUL},
        ),
        (
            "engineer",
            "post",
            f"/api/v1/registry/endpoints/{ws['endpoint'].slug}/request/",
            {"change": "retire", "reason": NUL},
        ),
        (
            "engineer",
            "post",
            f"/api/v1/registry/endpoints/{ws['endpoint'].slug}/suspend/",
            {"reason": NUL},
        ),
        (
            "owner",
            "post",
            "/api/v1/prompts/",
            {
                "slug": "nul-probe",
                "name": "NUL probe",
                "charter": charter.slug,
                "task_type": "drafting",
                "risk_level": "low",
                "tags": [NUL],
                "policy_tags": [NUL],
            },
        ),
        (
            "owner",
            "post",
            f"/api/v1/prompts/{prompt.slug}/versions/",
            {**version, "text": "{{ context }}" + NUL},
        ),
        (
            "owner",
            "post",
            f"/api/v1/prompts/{prompt.slug}/versions/",
            {**version, "model_config": {"model": NUL}},
        ),
        (
            "owner",
            "post",
            f"/api/v1/prompts/{prompt.slug}/versions/",
            {**version, "variables": [{"name": "context", "description": NUL}]},
        ),
        (
            "owner",
            "post",
            f"/api/v1/prompts/{prompt.slug}/render",
            {"version": 2, "variables": {"context": NUL}},
        ),
        (
            "owner",
            "post",
            "/api/v1/telemetry",
            {
                "source": NUL,
                "observations": [
                    {
                        "charter": charter.slug,
                        "metric": ws["metric"].name,
                        "value": 1.0,
                        "time": "2024-01-01T00:00:00Z",
                        "segments": {"language": NUL},
                        "idempotency_key": NUL,
                    }
                ],
                "events": [
                    {
                        "charter": charter.slug,
                        "event": "started",
                        "task_id": NUL,
                        "time": "2024-01-01T00:00:00Z",
                        "source": NUL,
                    }
                ],
            },
        ),
        (
            "owner",
            "patch",
            f"/api/v1/metrics/{ws['draft'].metrics.first().pk}/",
            {"allowed_segment_keys": [NUL]},
        ),
        (
            "owner",
            "patch",
            f"/api/v1/evaluations/suites/{ws['suite'].slug}/",
            {"scorers": [{"scorer": "contains", "params": {"text": [NUL]}}]},
        ),
    ]


def test_nul_characters_are_refused_or_ignored_never_a_server_error(ws):
    failures = []
    for persona, method, url, body in _nul_requests(ws):
        client = Client(raise_request_exception=False)
        client.force_login(ws.users[persona])
        with transaction.atomic():
            if body is None:
                response = getattr(client, method)(url)
            else:
                response = getattr(client, method)(url, body, content_type="application/json")
            transaction.set_rollback(True)
        if response.status_code >= 500:
            failures.append(f"{method.upper()} {url!r}: {response.status_code}")
    assert not failures, "\n".join(failures)


def test_nul_is_refused_with_the_field_named(ws):
    compliance = _as(ws, "compliance")
    api = compliance.get("/api/v1/audit/?actor=" + NUL)
    assert api.status_code == 400
    assert api.json()["code"] == "invalid" and "NUL" in api.json()["errors"]["actor"][0]
    assert compliance.get("/prompts/?q=" + NUL).status_code == 400
    form = compliance.post(
        f"/charters/{ws['charter'].slug}/transition/retire/",
        urlencode({"reason": NUL}),
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 400
    # The literal text \u0000 (an escaped backslash) is storable and passes.
    literal = compliance.get("/api/v1/audit/?actor=" + "\\u0000")
    assert literal.status_code == 200


def test_a_segment_key_longer_than_rollups_keep_is_rejected_not_a_server_error(ws):
    """Metrics may allow any segment key; rollups keep keys in a 64-character column."""
    owner = Client(raise_request_exception=False)
    owner.force_login(ws.users["owner"])
    metric = ws["metric"]
    key = "k" * 300
    type(metric).objects.filter(pk=metric.pk).update(allowed_segment_keys=[key])
    item = {
        "charter": ws["charter"].slug,
        "metric": metric.name,
        "value": 1.0,
        "time": "2024-01-01T00:00:00Z",
        "segments": {key: "v" * 300},
        "idempotency_key": "long-key",
    }
    response = owner.post(
        "/api/v1/telemetry", {"observations": [item]}, content_type="application/json"
    )
    assert response.status_code in (207, 400), response.content
    assert "at most 64 characters" in response.content.decode()


def test_over_long_text_is_refused_never_a_server_error(ws):
    """Text longer than its column: SQLite keeps it, PostgreSQL fails unless it is checked."""
    long = "L" * 1000
    charter, suite, prompt = ws["charter"], ws["suite"], ws["prompt"]
    run = {"suite": suite.slug, "prompt": prompt.slug, "version": 2}
    raci_row = {"activity": "approve_production_prompt", "role": "I", "user": "colin"}
    model = {"suite": suite.slug, "model_under_test": ws["artifact"].slug, "output_source": "model"}
    cases = [  # (url, JSON body, the field refused; None: kept, cut to its column)
        (f"/api/v1/charters/{charter.slug}/raci/", {**raci_row, "note": long}, "note"),
        ("/api/v1/evaluations/runs/", {**model, "input_variable": long}, "input_variable"),
        ("/api/v1/evaluations/runs/", {**run, "queue": long}, "queue"),
        ("/api/v1/evaluations/runs/", {**run, "note": long}, None),
    ]
    owner = Client(raise_request_exception=False)
    owner.force_login(ws.users["owner"])
    failures = []
    for url, body, field in cases:
        with transaction.atomic():
            response = owner.post(url, body, content_type="application/json")
            transaction.set_rollback(True)
        where = f"POST {url} {sorted(body)}: {response.status_code}"
        if field is None:
            if response.status_code != 201:
                failures.append(where)
        elif response.status_code != 400 or field not in response.json()["errors"]:
            failures.append(where)
    with transaction.atomic():
        upload = owner.post(
            "/api/v1/evaluations/artifacts/",
            {
                "name": "Model",
                "charter": charter.slug,
                "task": "sequence_classification",
                "model_file": io.BytesIO(b"not onnx"),
                "source": long,
                "license": long,
            },
        )
        transaction.set_rollback(True)
    if upload.status_code != 400 or {"source", "license"} - set(upload.json()["errors"]):
        failures.append(f"POST artifact upload: {upload.status_code} {upload.content[:300]}")
    assert not failures, "\n".join(failures)
