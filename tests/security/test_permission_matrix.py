"""The permission matrix of issue #7: every entry point × every persona, one test per cell.

Rows are entry points (web pages, admin pages, API list / detail / create / update / delete /
actions, exports) on objects of Olivia's charter *alpha* (see conftest for the world). Columns
are the personas. A cell is the outcome the design allows:

- a status code (200, 201, 204, 400, 403, 409 …), exactly;
- ``404``: hidden, and the response must equal the one for an id or slug that does not exist
  (same status, same body once the path is taken out);
- ``400~`` (any code with ``~``): that status, with a body equal to the one a non-existent
  object gets (creating under a charter you cannot see must not tell you it exists);
- ``L``: not signed in: web pages redirect to the login page, the admin to its own login, the
  API answers 401 (an API key means nothing to web pages and the admin);
- ``D``: a web form post that was done: a redirect without an error message (and, where the
  row says what, a message saying it was done: the admin redirects after an action it did
  not run too);
- ``G``: the admin's answer to an object outside the user's queryset (a redirect to the admin
  index), equal to its answer for an object that does not exist.

List rows also say which personas see alpha's and bravo's objects: the marker text of an
object must appear in the response exactly for those personas.

Where the cells depart from the obvious, the reason is in DESIGN.md's terms next to the row.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

import pytest
from django.contrib.messages import ERROR, get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from tests.evaluations.fixtures import case_rows
from tests.prompts.factories import version_fields
from tests.security.conftest import PERSONAS

pytestmark = pytest.mark.django_db

# Personas grouped the way the design talks about them (for the list markers).
ALPHA_PEOPLE = "owner responsible accountable consulted informed compliance"
BRAVO_PEOPLE = "compliance outsider foreign_key"
BRAVO_HUMANS = "compliance outsider"
HUMANS = ALPHA_PEOPLE + " outsider"
STEWARDS = "responsible compliance"  # the registry's: platform and compliance (REGISTRY_STEWARD)


@dataclass(frozen=True)
class Row:
    """One entry point; `cells` lists the outcome per persona in PERSONAS order."""

    name: str
    method: str
    path: str
    cells: str
    data: object = None
    fmt: str = "json"  # json | form | multipart | raw
    shows: dict = field(default_factory=dict)  # marker text -> personas who must see it
    said: str = ""  # for D cells: words a message after the post must hold (it was done)

    @property
    def kind(self) -> str:
        if self.path.startswith("/api/"):
            return "api"
        if self.path.startswith("/admin/"):
            return "admin"
        return "web"

    def expected(self, persona: str) -> str:
        tokens = self.cells.split()
        assert len(tokens) == len(PERSONAS), f"{self.name}: {len(tokens)} cells"
        return tokens[PERSONAS.index(persona)]


def _upload():
    rows = "".join(json.dumps(r) + "\n" for r in case_rows(4))
    return SimpleUploadedFile("cases.jsonl", rows.encode(), content_type="application/x-ndjson")


REASON = {"reason": "Checked with the team."}
OUTPUTS = [{"id": "c1", "output": "Returns within 30 days."}]
ALL = "200 200 200 200 200 200 200"  # every signed-in human
# The registry's writes: its stewards do them, everyone else who may read it is refused.
STEWARD_WRITE = "403 {ok} 403 403 403 {ok} 403 403 L"
STEWARD_FORM = "L D L L L D L L L"  # admin posts: only staff reach the admin at all
CHANGELIST = "/admin/registry/modelendpoint/"
NEW_ENDPOINT = {
    "name": "Matrix LLM",
    "slug": "matrix-llm",
    "base_url": "http://10.0.0.5:8000/v1",
    "model_names": ["matrix-chat"],
    "vendor": "internal",
    "data_location": "on_premises",
    "allow_private": True,
    "allow_private_reason": "The on-premises model server.",
}


def _admin_action(name: str, pk: str) -> dict:
    """An admin action on one endpoint, its reason given (the form it asks for first)."""
    return {"action": name, "_selected_action": [pk], "index": 0, "apply": "1", **REASON}


WEB = [
    # --- charters: the business owner's pages --------------------------------------------------
    Row(
        "web-charter-list",
        "GET",
        "/charters/?scope=all",
        f"{ALL} L L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_HUMANS},
    ),
    # Creating charters is for business owners (GROUP_PERMISSIONS: add_charter).
    Row("web-charter-create", "GET", "/charters/new/", "200 403 403 403 403 403 200 L L"),
    Row("web-charter-detail", "GET", "/charters/{alpha}/", "200 200 200 200 200 200 404 L L"),
    # Responsible may change the charter (RACI → change_charter); compliance decides, not edits.
    Row("web-charter-edit", "GET", "/charters/{draft}/edit/", "200 200 403 403 403 403 404 L L"),
    Row(
        "web-charter-submit",
        "POST",
        "/charters/{draft}/transition/submit/",
        "D D 403 403 403 403 404 L L",
        fmt="form",
    ),
    # Taking a charter live is a decision: compliance (global approve), never the owner.
    Row(
        "web-charter-go-live",
        "POST",
        "/charters/{alpha}/transition/go_live/",
        # Four eyes: the page asks (an approval request) for those who run the charter and
        # for compliance alike; nobody takes it live directly.
        "D D 403 403 403 D 404 L L",
        data=REASON,
        fmt="form",
    ),
    Row(
        "web-charter-share",
        "POST",
        "/charters/{alpha}/share/",
        "D D 403 403 403 403 404 L L",
        data={"username": "ivan", "access": "view"},
        fmt="form",
    ),
    Row(
        "web-charter-unshare",
        "POST",
        "/charters/{alpha}/unshare/",
        "D D 403 403 403 403 404 L L",
        data={"username": "colin"},
        fmt="form",
    ),
    # --- prompts ---------------------------------------------------------------------------------
    Row(
        "web-prompt-catalog",
        "GET",
        "/prompts/",
        f"{ALL} L L",
        shows={"alpha-reply": ALPHA_PEOPLE, "bravo-reply": BRAVO_HUMANS},
    ),
    Row("web-prompt-create", "GET", "/prompts/new/", "200 200 403 403 403 403 200 L L"),
    Row("web-prompt-detail", "GET", "/prompts/{prompt}/", "200 200 200 200 200 200 404 L L"),
    Row("web-prompt-edit", "GET", "/prompts/{prompt}/edit/", "200 200 403 403 403 403 404 L L"),
    Row(
        "web-prompt-diff",
        "GET",
        "/prompts/{prompt}/diff/?from=1&to=2",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-version-create",
        "GET",
        "/prompts/{prompt}/versions/new/",
        "200 200 403 403 403 403 404 L L",
    ),
    Row(
        "web-version-detail",
        "GET",
        "/prompts/{prompt}/versions/1/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-version-edit",
        "GET",
        "/prompts/{prompt}/versions/4/edit/",
        "200 200 403 403 403 403 404 L L",
    ),
    Row(
        "web-version-submit",
        "POST",
        "/prompts/{prompt}/versions/4/submit/",
        "D D 403 403 403 403 404 L L",
        fmt="form",
    ),
    # Reviewing (approve / reject a submitted version) is compliance's `review_prompt`.
    Row(
        "web-version-approve",
        "POST",
        "/prompts/{prompt}/versions/3/approve/",
        "403 403 403 403 403 D 404 L L",
        data=REASON,
        fmt="form",
    ),
    Row(
        "web-finding-waive",
        "POST",
        "/prompts/{prompt}/versions/3/waive/",
        "403 403 403 403 403 D 404 L L",
        data={"finding": "{finding}", **REASON},
        fmt="form",
    ),
    # Retiring and deprecating: the prompt's authors and reviewers (compliance retires assets).
    Row(
        "web-prompt-deprecate",
        "POST",
        "/prompts/{prompt}/deprecate/",
        "D D 403 403 403 D 404 L L",
        data=REASON,
        fmt="form",
    ),
    # --- evaluations -----------------------------------------------------------------------------
    Row(
        "web-evaluations-index",
        "GET",
        "/evaluations/",
        f"{ALL} L L",
        shows={"alpha-quality": ALPHA_PEOPLE, "bravo-quality": BRAVO_HUMANS},
    ),
    Row(
        "web-dataset-list",
        "GET",
        "/evaluations/datasets/",
        f"{ALL} L L",
        shows={"alpha-cases": ALPHA_PEOPLE, "bravo-cases": BRAVO_HUMANS},
    ),
    Row(
        "web-dataset-create",
        "GET",
        "/evaluations/datasets/new/",
        "200 200 403 403 403 403 200 L L",
    ),
    Row(
        "web-dataset-detail",
        "GET",
        "/evaluations/datasets/{dataset}/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-dataset-version",
        "GET",
        "/evaluations/datasets/{dataset}/v1/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-dataset-export",
        "GET",
        "/evaluations/datasets/{dataset}/v1/export/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-artifact-list",
        "GET",
        "/evaluations/models/",
        f"{ALL} L L",
        shows={"alpha-model": ALPHA_PEOPLE, "bravo-model": BRAVO_HUMANS},
    ),
    Row(
        "web-artifact-detail",
        "GET",
        "/evaluations/models/{artifact}/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row("web-suite-create", "GET", "/evaluations/suites/new/", "200 200 403 403 403 403 200 L L"),
    Row(
        "web-suite-detail",
        "GET",
        "/evaluations/suites/{suite}/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-suite-edit",
        "GET",
        "/evaluations/suites/{suite}/edit/",
        "200 200 403 403 403 403 404 L L",
    ),
    Row(
        "web-run-detail",
        "GET",
        "/evaluations/runs/{run}/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-run-cancel",
        "POST",
        "/evaluations/runs/{run}/cancel/",
        "D D 403 403 403 403 404 L L",
        fmt="form",
    ),
    # --- approvals -------------------------------------------------------------------------------
    Row(
        "web-approvals-inbox",
        "GET",
        "/approvals/",
        f"{ALL} L L",
        # delta-llm: the endpoint request, its requester's and compliance's (who decides).
        shows={"alpha-reply": "owner accountable consulted", "delta-llm": STEWARDS},
    ),
    Row(
        "web-approval-detail",
        "GET",
        "/approvals/{promotion}/",
        "200 200 200 200 200 200 404 L L",
    ),
    # Comments come from the people RACI names on the request and its requester.
    Row(
        "web-approval-comment",
        "POST",
        "/approvals/{promotion}/",
        "D 403 D D D 403 404 L L",
        data={"verdict": "comment", "comment": "Looks fine."},
        fmt="form",
    ),
    Row(
        "web-approval-withdraw",
        "POST",
        "/approvals/{promotion}/withdraw/",
        "D 403 403 403 403 403 404 L L",
        fmt="form",
    ),
    Row(
        "web-raci-matrix",
        "GET",
        "/approvals/raci/{alpha}/",
        "200 200 200 200 200 200 404 L L",
    ),
    # The owner, whoever may change the charter, and compliance set RACI.
    Row(
        "web-raci-assign",
        "POST",
        "/approvals/raci/{alpha}/",
        "D D 403 403 403 D 404 L L",
        data={"activity": "approve_charter", "role": "C", "user": "{informed_id}"},
        fmt="form",
    ),
    Row(
        "web-charter-request",
        "POST",
        "/approvals/charter/{alpha}/request/",
        "D D 403 403 403 D 404 L L",
        data={"name": "go_live", **REASON},
        fmt="form",
    ),
    Row(
        "web-audit-timeline",
        "GET",
        "/approvals/audit/",
        f"{ALL} L L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_HUMANS},
    ),
    Row(
        "web-evidence-json",
        "GET",
        "/approvals/evidence/{alpha}.json",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-evidence-csv",
        "GET",
        "/approvals/evidence/{alpha}.csv",
        "200 200 200 200 200 200 404 L L",
    ),
    # --- scorecards and the inbox ---------------------------------------------------------------
    Row(
        "web-portfolio",
        "GET",
        "/scorecards/",
        f"{ALL} L L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_HUMANS},
    ),
    Row(
        "web-portfolio-csv",
        "GET",
        "/scorecards/?as=csv",
        f"{ALL} L L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_HUMANS},
    ),
    Row(
        "web-scorecard",
        "GET",
        "/scorecards/{alpha}/",
        "200 200 200 200 200 200 404 L L",
    ),
    Row(
        "web-inbox",
        "GET",
        "/inbox/",
        f"{ALL} L L",
        shows={"Hello olivia": "owner", "Hello oscar": "outsider"},
    ),
    Row("web-inbox-read", "POST", "/inbox/read/", "D D D D D D D L L", fmt="form"),
    # --- the model registry: one library every signed-in person reads ------------------------
    # Which charters depend on an endpoint follows charter visibility; its stewards are offered
    # to propose and to manage it in the admin.
    Row(
        "web-registry-list",
        "GET",
        "/registry/",
        f"{ALL} L L",
        shows={"alpha-llm": HUMANS, "beta-llm": HUMANS, "Propose an endpoint": STEWARDS},
    ),
    Row(
        "web-registry-detail",
        "GET",
        "/registry/{endpoint}/",
        f"{ALL} L L",
        shows={
            "Alpha support": ALPHA_PEOPLE,
            "Bravo sales": BRAVO_HUMANS,
            "Manage in the admin": STEWARDS,
        },
    ),
    Row("web-registry-detail-missing", "GET", "/registry/no-such-thing/", "404 " * 7 + "L L"),
    # Requests about endpoints are the stewards' (and compliance decides them): to anyone else
    # such a request does not exist.
    Row(
        "web-endpoint-approval-detail",
        "GET",
        "/approvals/{endpoint_request}/",
        "404 200 404 404 404 200 404 L L",
    ),
    Row(
        "web-endpoint-approval-approve",
        "POST",
        "/approvals/{endpoint_request}/",
        "404 403 404 404 404 D 404 L L",
        data={"verdict": "approve", "comment": "Data terms checked."},
        fmt="form",
    ),
]

# The admin is compliance's (DESIGN: compliance works in the Django admin). Rita is staff as an
# operator (the platform group keeps the beat schedule there): she sees what RACI lets her see.
ADMIN_STAFF = "L 200 L L L 200 L L L"
ADMIN = [
    Row("admin-index", "GET", "/admin/", ADMIN_STAFF),
    Row(
        "admin-charter-list",
        "GET",
        "/admin/charters/charter/",
        ADMIN_STAFF,
        shows={"Alpha support": "responsible compliance", "Bravo sales": "compliance"},
    ),
    Row("admin-charter-change", "GET", "/admin/charters/charter/{alpha_pk}/change/", ADMIN_STAFF),
    Row(
        "admin-charter-change-bravo",
        "GET",
        "/admin/charters/charter/{bravo_pk}/change/",
        "L G L L L 200 L L L",
    ),
    Row(
        "admin-charter-history-bravo",
        "GET",
        "/admin/charters/charter/{bravo_pk}/history/",
        "L 404 L L L 200 L L L",
    ),
    Row(
        "admin-prompt-history-bravo",
        "GET",
        "/admin/prompts/prompt/{bravo_prompt_pk}/history/",
        "L 404 L L L 200 L L L",
    ),
    Row(
        "admin-dataset-history-bravo",
        "GET",
        "/admin/evaluations/dataset/{bravo_dataset_pk}/history/",
        "L 404 L L L 200 L L L",
    ),
    # Visible to Rita through RACI, but history pages are compliance's evidence.
    Row(
        "admin-charter-history",
        "GET",
        "/admin/charters/charter/{alpha_pk}/history/",
        "L 403 L L L 200 L L L",
    ),
    Row(
        "admin-metric-change-bravo",
        "GET",
        "/admin/charters/metric/{bravo_metric_pk}/change/",
        "L G L L L 200 L L L",
    ),
    Row(
        "admin-prompt-list",
        "GET",
        "/admin/prompts/prompt/",
        ADMIN_STAFF,
        shows={"alpha-reply": "responsible compliance", "bravo-reply": "compliance"},
    ),
    Row("admin-prompt-change", "GET", "/admin/prompts/prompt/{prompt_pk}/change/", ADMIN_STAFF),
    Row(
        "admin-prompt-change-bravo",
        "GET",
        "/admin/prompts/prompt/{bravo_prompt_pk}/change/",
        "L G L L L 200 L L L",
    ),
    Row(
        "admin-version-change",
        "GET",
        "/admin/prompts/promptversion/{v1_pk}/change/",
        ADMIN_STAFF,
    ),
    # Datasets, suites and RACI are compliance's admin pages (GROUP_PERMISSIONS), not operators'.
    Row(
        "admin-dataset-list",
        "GET",
        "/admin/evaluations/dataset/",
        "L 403 L L L 200 L L L",
        shows={"alpha-cases": "compliance", "bravo-cases": "compliance"},
    ),
    Row(
        "admin-dataset-change-bravo",
        "GET",
        "/admin/evaluations/dataset/{bravo_dataset_pk}/change/",
        "L 403~ L L L 200 L L L",
    ),
    Row(
        "admin-suite-change-bravo",
        "GET",
        "/admin/evaluations/suite/{bravo_suite_pk}/change/",
        "L 403~ L L L 200 L L L",
    ),
    Row(
        "admin-run-change-bravo",
        "GET",
        "/admin/evaluations/run/{bravo_run}/change/",
        "L G L L L 200 L L L",
    ),
    Row(
        "admin-approval-change",
        "GET",
        "/admin/approvals/approvalrequest/{promotion}/change/",
        ADMIN_STAFF,
    ),
    Row("admin-raci-list", "GET", "/admin/approvals/raciassignment/", "L 403 L L L 200 L L L"),
    Row(
        "admin-metric-list",
        "GET",
        "/admin/charters/metric/",
        ADMIN_STAFF,
        shows={"Alpha support": "responsible compliance", "Bravo sales": "compliance"},
    ),
    Row(
        "admin-dependency-list",
        "GET",
        "/admin/charters/dependency/",
        ADMIN_STAFF,
        shows={"Alpha support": "responsible compliance", "Bravo sales": "compliance"},
    ),
    Row(
        "admin-version-list",
        "GET",
        "/admin/prompts/promptversion/",
        ADMIN_STAFF,
        shows={"Alpha reply": "responsible compliance", "Bravo reply": "compliance"},
    ),
    Row(
        "admin-label-list",
        "GET",
        "/admin/prompts/label/",
        ADMIN_STAFF,
        shows={"Alpha reply": "responsible compliance", "Bravo reply": "compliance"},
    ),
    Row(
        "admin-labelmove-list",
        "GET",
        "/admin/prompts/labelmove/",
        ADMIN_STAFF,
        shows={"Alpha reply": "responsible compliance", "Bravo reply": "compliance"},
    ),
    Row("admin-finding-list", "GET", "/admin/prompts/policyfinding/", ADMIN_STAFF),
    Row("admin-consumer-list", "GET", "/admin/prompts/consumer/", ADMIN_STAFF),
    Row(
        "admin-run-list",
        "GET",
        "/admin/evaluations/run/",
        ADMIN_STAFF,
        shows={"alpha quality": "responsible compliance", "bravo quality": "compliance"},
    ),
    Row(
        "admin-approval-list",
        "GET",
        "/admin/approvals/approvalrequest/",
        ADMIN_STAFF,
        shows={"alpha-reply": "responsible compliance"},
    ),
    Row(
        "admin-suite-list",
        "GET",
        "/admin/evaluations/suite/",
        "L 403 L L L 200 L L L",
        shows={"alpha quality": "compliance", "bravo quality": "compliance"},
    ),
    Row(
        "admin-artifact-list",
        "GET",
        "/admin/evaluations/modelartifact/",
        "L 403 L L L 200 L L L",
        shows={"alpha model": "compliance", "bravo model": "compliance"},
    ),
    Row("admin-policyrule-list", "GET", "/admin/prompts/policyrule/", "L 403 L L L 200 L L L"),
    # Operators keep the beat schedule (GROUP_PERMISSIONS: platform); nobody here manages
    # accounts, routes, calls or other people's notifications in the admin.
    Row(
        "admin-beat-list",
        "GET",
        "/admin/django_celery_beat/periodictask/",
        "L 200 L L L 403 L L L",
    ),
    Row("admin-user-list", "GET", "/admin/auth/user/", "L 403 L L L 403 L L L"),
    Row("admin-route-list", "GET", "/admin/gateway/route/", "L 403 L L L 403 L L L"),
    Row("admin-call-list", "GET", "/admin/gateway/call/", "L 403 L L L 403 L L L"),
    Row("admin-notification-list", "GET", "/admin/core/notification/", "L 403 L L L 403 L L L"),
    # Audit events, applications and API keys are compliance's records (GROUP_PERMISSIONS).
    Row("admin-audit-list", "GET", "/admin/core/auditevent/", "L 403 L L L 200 L L L"),
    Row("admin-application-list", "GET", "/admin/prompts/application/", "L 403 L L L 200 L L L"),
    Row("admin-apikey-list", "GET", "/admin/core/apikey/", "L 403 L L L 403 L L L"),
    # The model registry: operators and compliance keep it (REGISTRY_STEWARD); approval,
    # reinstatement and retirement are requests, suspension the emergency stop.
    Row("admin-registry-list", "GET", CHANGELIST, ADMIN_STAFF, shows={"alpha-llm": STEWARDS}),
    Row("admin-registry-add", "GET", f"{CHANGELIST}add/", ADMIN_STAFF),
    Row(
        "admin-registry-add-post",
        "POST",
        f"{CHANGELIST}add/",
        STEWARD_FORM,
        data={
            **NEW_ENDPOINT,
            "model_names": "matrix-chat",
            "description": "",
            "provider_kind": "openai",
            "region": "",
            "retention_days": "",
            "training_use": "no",
            "terms": "",
            "risk_tiers": ["low", "medium"],
            "credential": "",
            "proxy": "",
            "price_per_1k_input": "0",
            "price_per_1k_output": "0",
            "timeout_s": "30",
            "max_retries": "2",
            "concurrency": "4",
        },
        fmt="form",
        said="was added successfully",
    ),
    Row("admin-registry-change", "GET", CHANGELIST + "{endpoint_pk}/change/", ADMIN_STAFF),
    Row("admin-registry-history", "GET", CHANGELIST + "{endpoint_pk}/history/", ADMIN_STAFF),
    Row(
        "admin-registry-ask-approve",
        "POST",
        CHANGELIST,
        STEWARD_FORM,
        data=_admin_action("ask_approve", "{proposed_endpoint_pk}"),
        said="approval requested",
        fmt="form",
    ),
    Row(
        "admin-registry-suspend",
        "POST",
        CHANGELIST,
        STEWARD_FORM,
        data=_admin_action("suspend", "{endpoint_pk}"),
        said="suspended",
        fmt="form",
    ),
    Row(
        "admin-registry-ask-reinstate",
        "POST",
        CHANGELIST,
        STEWARD_FORM,
        data=_admin_action("ask_reinstate", "{suspended_endpoint_pk}"),
        said="reinstatement requested",
        fmt="form",
    ),
    Row(
        "admin-registry-ask-retire",
        "POST",
        CHANGELIST,
        STEWARD_FORM,
        data=_admin_action("ask_retire", "{endpoint_pk}"),
        said="retirement requested",
        fmt="form",
    ),
    Row(
        "admin-endpoint-approval-change",
        "GET",
        "/admin/approvals/approvalrequest/{endpoint_request}/change/",
        ADMIN_STAFF,
    ),
]

API = [
    # --- who am I, my notifications ------------------------------------------------------------
    Row("api-me", "GET", "/api/v1/me/", f"{ALL} 200 L"),
    Row(
        "api-notifications",
        "GET",
        "/api/v1/notifications/",
        f"{ALL} 200 L",
        shows={"Hello olivia": "owner", "Hello oscar": "outsider"},
    ),
    Row("api-notifications-read", "POST", "/api/v1/notifications/mark-read/", f"{ALL} 200 L"),
    # --- charters ----------------------------------------------------------------------------------
    Row(
        "api-charter-list",
        "GET",
        "/api/v1/charters/",
        f"{ALL} 200 L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_PEOPLE},
    ),
    Row(
        "api-charter-detail",
        "GET",
        "/api/v1/charters/{alpha}/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-charter-create",
        "POST",
        "/api/v1/charters/",
        "201 403 403 403 403 403 201 403 L",
        data={"title": "A new initiative"},
    ),
    Row(
        "api-charter-update",
        "PATCH",
        "/api/v1/charters/{draft}/",
        "200 200 403 403 403 403 404 404 L",
        data={"problem": "Sharper problem statement."},
    ),
    # Past draft a charter is not edited (409) — but only those who may change it learn that.
    Row(
        "api-charter-update-live",
        "PATCH",
        "/api/v1/charters/{alpha}/",
        "409 409 403 403 403 403 404 404 L",
        data={"problem": "Sharper problem statement."},
    ),
    Row(
        "api-charter-delete",
        "DELETE",
        "/api/v1/charters/{draft}/",
        "204 204 403 403 403 403 404 404 L",
    ),
    Row(
        "api-charter-submit",
        "POST",
        "/api/v1/charters/{draft}/submit/",
        "200 200 403 403 403 403 404 404 L",
        data={},
    ),
    Row(
        "api-charter-go-live",
        "POST",
        "/api/v1/charters/{alpha}/go-live/",
        # Four eyes: a direct go-live is refused even for compliance (ask: request/go_live/).
        "403 403 403 403 403 409 404 404 L",
        data=REASON,
    ),
    Row(
        "api-charter-share",
        "POST",
        "/api/v1/charters/{alpha}/share/",
        "200 200 403 403 403 403 404 404 L",
        data={"username": "ivan", "access": "view"},
    ),
    Row(
        "api-charter-unshare",
        "POST",
        "/api/v1/charters/{alpha}/unshare/",
        "200 200 403 403 403 403 404 404 L",
        data={"username": "colin"},
    ),
    Row(
        "api-charter-access",
        "GET",
        "/api/v1/charters/{alpha}/access/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-metric-list",
        "GET",
        "/api/v1/metrics/",
        f"{ALL} 200 L",
        shows={'"charter":"alpha"': ALPHA_PEOPLE, '"charter":"bravo"': BRAVO_PEOPLE},
    ),
    Row(
        "api-metric-detail", "GET", "/api/v1/metrics/{metric}/", "200 200 200 200 200 200 404 404 L"
    ),
    Row(
        "api-metric-create",
        "POST",
        "/api/v1/metrics/",
        "201 201 403 403 403 403 400~ 400~ L",
        data={
            "charter": "{draft}",
            "name": "Escalation rate",
            "layer": "output_quality",
            "role": "supporting",
            "unit": "%",
            "direction": "decrease",
        },
    ),
    Row(
        "api-metric-update",
        "PATCH",
        "/api/v1/metrics/{draft_metric}/",
        "200 200 403 403 403 403 404 404 L",
        data={"unit": "min"},
    ),
    Row(
        "api-metric-delete",
        "DELETE",
        "/api/v1/metrics/{draft_metric}/",
        "204 204 403 403 403 403 404 404 L",
    ),
    # --- prompts -----------------------------------------------------------------------------------
    Row(
        "api-prompt-list",
        "GET",
        "/api/v1/prompts/",
        f"{ALL} 200 L",
        shows={"alpha-reply": ALPHA_PEOPLE, "bravo-reply": BRAVO_PEOPLE},
    ),
    Row(
        "api-prompt-detail", "GET", "/api/v1/prompts/{prompt}/", "200 200 200 200 200 200 404 404 L"
    ),
    Row(
        "api-prompt-create",
        "POST",
        "/api/v1/prompts/",
        "201 201 403 403 403 403 400~ 400~ L",
        data={
            "slug": "alpha-new",
            "name": "Alpha new",
            "charter": "{alpha}",
            "task_type": "drafting",
        },
    ),
    Row(
        "api-prompt-update",
        "PATCH",
        "/api/v1/prompts/{prompt}/",
        "200 200 403 403 403 403 404 404 L",
        data={"description": "Drafts replies."},
    ),
    Row(
        "api-prompt-versions",
        "GET",
        "/api/v1/prompts/{prompt}/versions/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-version-create",
        "POST",
        "/api/v1/prompts/{prompt}/versions/",
        "201 201 403 403 403 403 404 404 L",
        data=version_fields(),
    ),
    Row(
        "api-prompt-labels",
        "GET",
        "/api/v1/prompts/{prompt}/labels/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-prompt-diff",
        "GET",
        "/api/v1/prompts/{prompt}/diff/?from=1&to=2",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-prompt-fork",
        "POST",
        "/api/v1/prompts/{prompt}/fork/",
        "201 201 403 403 403 403 404 404 L",
        data={"charter": "{alpha}", "name": "Alpha fork", "version": 1},
    ),
    Row(
        "api-prompt-deprecate",
        "POST",
        "/api/v1/prompts/{prompt}/deprecate/",
        "200 200 403 403 403 200 404 404 L",
        data=REASON,
    ),
    Row(
        "api-prompt-retire",
        "POST",
        "/api/v1/prompts/{prompt}/retire/",
        "200 200 403 403 403 200 404 404 L",
        data=REASON,
    ),
    Row(
        "api-version-detail",
        "GET",
        "/api/v1/prompts/{prompt}/versions/1/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-version-update",
        "PATCH",
        "/api/v1/prompts/{prompt}/versions/4/",
        "200 200 403 403 403 403 404 404 L",
        data={"release_notes": "Tighter wording."},
    ),
    Row(
        "api-version-delete",
        "DELETE",
        "/api/v1/prompts/{prompt}/versions/4/",
        "204 204 403 403 403 403 404 404 L",
    ),
    Row(
        "api-version-submit",
        "POST",
        "/api/v1/prompts/{prompt}/versions/4/submit/",
        "200 200 403 403 403 403 404 404 L",
        data={},
    ),
    Row(
        "api-version-approve",
        "POST",
        "/api/v1/prompts/{prompt}/versions/3/approve/",
        "403 403 403 403 403 200 404 404 L",
        data=REASON,
    ),
    Row(
        "api-version-reject",
        "POST",
        "/api/v1/prompts/{prompt}/versions/3/reject/",
        "403 403 403 403 403 200 404 404 L",
        data=REASON,
    ),
    # v2 already waits for approval: authors learn that (409), nobody else gets that far.
    Row(
        "api-version-promote",
        "POST",
        "/api/v1/prompts/{prompt}/versions/2/promote/",
        "409 409 403 403 403 403 404 404 L",
        data={"label": "production", **REASON},
    ),
    Row(
        "api-version-label",
        "POST",
        "/api/v1/prompts/{prompt}/versions/1/label/",
        "200 200 403 403 403 403 404 404 L",
        data={"label": "staging"},
    ),
    Row(
        "api-version-findings",
        "GET",
        "/api/v1/prompts/{prompt}/versions/3/findings/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-finding-waive",
        "POST",
        "/api/v1/findings/{finding}/waive/",
        "403 403 403 403 403 200 404 404 L",
        data=REASON,
    ),
    Row(
        "api-prompt-resolve",
        "GET",
        "/api/v1/prompts/{prompt}/resolve",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-prompt-render",
        "POST",
        "/api/v1/prompts/{prompt}/render",
        "200 200 200 200 200 200 404 404 L",
        data={"variables": {"context": "Returns within 30 days.", "message": "Can I return?"}},
    ),
    # No route is configured in this world: whoever may see the prompt learns that (409).
    Row(
        "api-prompt-execute",
        "POST",
        "/api/v1/prompts/{prompt}/execute",
        "409 409 409 409 409 409 404 404 L",
        data={"variables": {"context": "Returns within 30 days.", "message": "Can I return?"}},
    ),
    # --- applications: their owners (and compliance, which sees them all) ---------------------------
    Row(
        "api-application-list",
        "GET",
        "/api/v1/applications/",
        f"{ALL} 200 L",
        shows={'"slug":"helpdesk"': "owner compliance", '"slug":"crm"': "compliance outsider"},
    ),
    Row(
        "api-application-detail",
        "GET",
        "/api/v1/applications/{helpdesk}/",
        "200 404 404 404 404 200 404 404 L",
    ),
    # Anyone signed in registers an application, but not an integration: a key that could
    # register applications could mint keys that outlive its own revocation.
    Row(
        "api-application-create",
        "POST",
        "/api/v1/applications/",
        f"{ALL.replace('200', '201')} 403 L",
        data={"name": "Billing bot", "slug": "billing-bot"},
    ),
    Row(
        "api-application-keys",
        "GET",
        "/api/v1/applications/{helpdesk}/keys/",
        "200 404 404 404 404 200 404 404 L",
    ),
    Row(
        "api-application-key-create",
        "POST",
        "/api/v1/applications/{helpdesk}/keys/",
        "201 404 404 404 404 403 404 404 L",
        data={"name": "staging"},
    ),
    Row(
        "api-application-key-revoke",
        "POST",
        "/api/v1/applications/{helpdesk}/keys/{helpdesk_prefix}/revoke/",
        "204 404 404 404 404 403 404 404 L",
        data={},
    ),
    Row(
        "api-application-consumptions",
        "GET",
        "/api/v1/applications/{helpdesk}/consumptions/",
        "200 404 404 404 404 200 404 404 L",
    ),
    # --- evaluations ---------------------------------------------------------------------------------
    Row(
        "api-dataset-list",
        "GET",
        "/api/v1/evaluations/datasets/",
        f"{ALL} 200 L",
        shows={"alpha-cases": ALPHA_PEOPLE, "bravo-cases": BRAVO_PEOPLE},
    ),
    Row(
        "api-dataset-detail",
        "GET",
        "/api/v1/evaluations/datasets/{dataset}/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-dataset-create",
        "POST",
        "/api/v1/evaluations/datasets/",
        "201 201 403 403 403 403 400~ 400~ L",
        data={"name": "More cases", "charter": "{alpha}"},
    ),
    Row(
        "api-dataset-versions",
        "GET",
        "/api/v1/evaluations/datasets/{dataset}/versions/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-dataset-upload",
        "POST",
        "/api/v1/evaluations/datasets/{dataset}/versions/",
        "201 201 403 403 403 403 404 404 L",
        data={"file": "{upload}"},
        fmt="multipart",
    ),
    Row(
        "api-dataset-derive",
        "POST",
        "/api/v1/evaluations/datasets/{dataset}/versions/derive/",
        "201 201 403 403 403 403 404 404 L",
        data={"removals": ["c1"]},
    ),
    Row(
        "api-dataset-cases",
        "GET",
        "/api/v1/evaluations/datasets/{dataset}/versions/1/cases/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-dataset-export",
        "GET",
        "/api/v1/evaluations/datasets/{dataset}/versions/1/export/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-artifact-list",
        "GET",
        "/api/v1/evaluations/artifacts/",
        f"{ALL} 200 L",
        shows={"alpha-model": ALPHA_PEOPLE, "bravo-model": BRAVO_PEOPLE},
    ),
    Row(
        "api-artifact-detail",
        "GET",
        "/api/v1/evaluations/artifacts/{artifact}/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-artifact-retire",
        "POST",
        "/api/v1/evaluations/artifacts/{artifact}/retire/",
        "200 200 403 403 403 403 404 404 L",
        data={},
    ),
    # The artifact is still pending validation: authors are told so, others are refused first.
    Row(
        "api-artifact-quantize",
        "POST",
        "/api/v1/evaluations/artifacts/{artifact}/quantize/",
        "409 409 403 403 403 403 404 404 L",
        data={},
    ),
    Row(
        "api-suite-list",
        "GET",
        "/api/v1/evaluations/suites/",
        f"{ALL} 200 L",
        shows={"alpha-quality": ALPHA_PEOPLE, "bravo-quality": BRAVO_PEOPLE},
    ),
    Row(
        "api-suite-detail",
        "GET",
        "/api/v1/evaluations/suites/{suite}/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-suite-create",
        "POST",
        "/api/v1/evaluations/suites/",
        "201 201 403 403 403 403 400~ 400~ L",
        data={
            "name": "Alpha strict",
            "charter": "{alpha}",
            "dataset": "{dataset}",
            "scorers": [{"scorer": "exact_match"}],
        },
    ),
    Row(
        "api-suite-update",
        "PATCH",
        "/api/v1/evaluations/suites/{suite}/",
        "200 200 403 403 403 403 404 404 L",
        data={"description": "Stricter."},
    ),
    Row(
        "api-suite-thresholds",
        "GET",
        "/api/v1/evaluations/suites/{suite}/thresholds/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-threshold-add",
        "POST",
        "/api/v1/evaluations/suites/{suite}/thresholds/",
        "201 201 403 403 403 403 404 404 L",
        data={"metric": "token_f1", "aggregate": "p10", "comparator": ">=", "value": 0.2},
    ),
    # The threshold's owner changes it at once; another author asks its owner (202).
    Row(
        "api-threshold-change",
        "PATCH",
        "/api/v1/evaluations/suites/{suite}/thresholds/{threshold}/",
        "200 202 403 403 403 403 404 404 L",
        data={"value": 0.6, **REASON},
    ),
    Row(
        "api-threshold-delete",
        "DELETE",
        "/api/v1/evaluations/suites/{suite}/thresholds/{threshold}/",
        # The threshold's owner removes it at once; a Responsible asks the owner (202).
        "204 202 403 403 403 403 404 404 L",
    ),
    Row(
        "api-run-list",
        "GET",
        "/api/v1/evaluations/runs/",
        f"{ALL} 200 L",
        shows={'"suite":"alpha-quality"': ALPHA_PEOPLE, '"suite":"bravo-quality"': BRAVO_PEOPLE},
    ),
    Row(
        "api-run-detail",
        "GET",
        "/api/v1/evaluations/runs/{run}/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-run-start",
        "POST",
        "/api/v1/evaluations/runs/",
        "201 201 403 403 403 403 400~ 400~ L",
        data={"suite": "{suite}", "prompt": "{prompt}", "version": 2},
    ),
    Row(
        "api-run-outputs",
        "POST",
        "/api/v1/evaluations/runs/{run}/outputs/",
        "200 200 403 403 403 403 404 404 L",
        data=OUTPUTS,
    ),
    Row(
        "api-run-outputs-jsonl",
        "POST",
        "/api/v1/evaluations/runs/{run}/outputs.jsonl",
        "200 200 403 403 403 403 404 404 L",
        data="".join(json.dumps(o) + "\n" for o in OUTPUTS),
        fmt="raw",
    ),
    Row(
        "api-run-score",
        "POST",
        "/api/v1/evaluations/runs/{run}/score/",
        "200 200 403 403 403 403 404 404 L",
        data={},
    ),
    Row(
        "api-run-cancel",
        "POST",
        "/api/v1/evaluations/runs/{run}/cancel/",
        "200 200 403 403 403 403 404 404 L",
        data={},
    ),
    # Still waiting for outputs: the gate answers 202 to whoever may see the run.
    Row(
        "api-run-verdict",
        "GET",
        "/api/v1/evaluations/runs/{run}/verdict/",
        "202 202 202 202 202 202 404 404 L",
    ),
    Row(
        "api-run-results",
        "GET",
        "/api/v1/evaluations/runs/{run}/results/",
        "200 200 200 200 200 200 404 404 L",
    ),
    # --- approvals, audit, evidence ----------------------------------------------------------------
    Row("api-raci", "GET", "/api/v1/charters/{alpha}/raci/", "200 200 200 200 200 200 404 404 L"),
    Row(
        "api-raci-assign",
        "POST",
        "/api/v1/charters/{alpha}/raci/",
        "201 201 403 403 403 201 404 404 L",
        data={"activity": "approve_charter", "role": "C", "user": "ivan"},
    ),
    Row(
        "api-raci-remove",
        "DELETE",
        "/api/v1/charters/{alpha}/raci/{assignment}/",
        "204 204 403 403 403 204 404 404 L",
    ),
    Row(
        "api-evidence-json",
        "GET",
        "/api/v1/charters/{alpha}/evidence/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-evidence-csv",
        "GET",
        "/api/v1/charters/{alpha}/evidence/?as=csv",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-charter-decision-request",
        "POST",
        "/api/v1/charters/{alpha}/request/go_live/",
        "201 201 403 403 403 201 404 404 L",
        data=REASON,
    ),
    Row(
        "api-audit-timeline",
        "GET",
        "/api/v1/audit/",
        f"{ALL} 200 L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_PEOPLE},
    ),
    Row(
        "api-approval-list",
        "GET",
        "/api/v1/approvals/requests/",
        f"{ALL} 200 L",
        shows={"alpha-reply": ALPHA_PEOPLE, "delta-llm": STEWARDS},
    ),
    Row(
        "api-approval-detail",
        "GET",
        "/api/v1/approvals/requests/{promotion}/",
        "200 200 200 200 200 200 404 404 L",
    ),
    # Only the Accountable approves, never the requester (DESIGN: no self-approval).
    Row(
        "api-approval-approve",
        "POST",
        "/api/v1/approvals/requests/{promotion}/decide/",
        "403 403 200 403 403 403 404 404 L",
        data={"verdict": "approve"},
    ),
    Row(
        "api-approval-comment",
        "POST",
        "/api/v1/approvals/requests/{promotion}/decide/",
        "200 403 200 200 200 403 404 404 L",
        data={"verdict": "comment", "comment": "Looks fine."},
    ),
    Row(
        "api-approval-withdraw",
        "POST",
        "/api/v1/approvals/requests/{promotion}/withdraw/",
        "200 403 403 403 403 403 404 404 L",
        data={},
    ),
    # --- scorecards --------------------------------------------------------------------------------
    # Telemetry: whoever may change the charter, and integrations that may see it. For anyone
    # else alpha's metric is "no such metric", word for word.
    Row(
        "api-telemetry",
        "POST",
        "/api/v1/telemetry",
        "200 200 400~ 400~ 400~ 400~ 400~ 400~ L",
        data={
            "observations": [
                {
                    "metric_id": "{metric}",
                    "value": 11,
                    "time": "2025-01-01T00:00:00+00:00",
                    "idempotency_key": "matrix-1",
                }
            ]
        },
    ),
    # --- the crm application's own charter: what its key is for ------------------------------------
    # DESIGN: integrations resolve the live prompt, post telemetry and start an evaluation — on
    # the charter shared with them. Seen from alpha's people, bravo does not exist.
    Row(
        "api-prompt-resolve-bravo",
        "GET",
        "/api/v1/prompts/{bravo_prompt}/resolve",
        "404 404 404 404 404 200 200 200 L",
    ),
    Row(
        "api-run-start-bravo",
        "POST",
        "/api/v1/evaluations/runs/",
        "400~ 400~ 400~ 400~ 400~ 403 201 201 L",
        data={"suite": "{bravo_suite}", "prompt": "{bravo_prompt}", "version": 1},
    ),
    Row(
        "api-telemetry-bravo",
        "POST",
        "/api/v1/telemetry",
        "400~ 400~ 400~ 400~ 400~ 400~ 200 200 L",
        data={
            "observations": [
                {
                    "metric_id": "{bravo_metric_pk}",
                    "value": 3,
                    "time": "2025-01-01T00:00:00+00:00",
                    "idempotency_key": "matrix-2",
                }
            ]
        },
    ),
    Row(
        "api-scorecard",
        "GET",
        "/api/v1/charters/{alpha}/scorecard/",
        "200 200 200 200 200 200 404 404 L",
    ),
    Row(
        "api-portfolio",
        "GET",
        "/api/v1/portfolio/",
        f"{ALL} 200 L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_PEOPLE},
    ),
    Row(
        "api-portfolio-csv",
        "GET",
        "/api/v1/portfolio/?as=csv",
        f"{ALL} 200 L",
        shows={"Alpha support": ALPHA_PEOPLE, "Bravo sales": BRAVO_PEOPLE},
    ),
    # --- the model registry ----------------------------------------------------------------------
    # Everyone signed in reads it, integrations included (they pick endpoints from it); only
    # its stewards propose, edit, ask for decisions and suspend.
    Row(
        "api-registry-list",
        "GET",
        "/api/v1/registry/endpoints/",
        f"{ALL} 200 L",
        shows={'"slug":"alpha-llm"': HUMANS + " foreign_key"},
    ),
    Row("api-registry-detail", "GET", "/api/v1/registry/endpoints/{endpoint}/", f"{ALL} 200 L"),
    Row(
        "api-registry-create",
        "POST",
        "/api/v1/registry/endpoints/",
        STEWARD_WRITE.format(ok=201),
        data=NEW_ENDPOINT,
    ),
    Row(
        "api-registry-update",
        "PATCH",
        "/api/v1/registry/endpoints/{endpoint}/",
        STEWARD_WRITE.format(ok=200),
        data={"description": "Serves the support pilots."},
    ),
    # Where data goes is decided: the edit becomes a request (still 200, naming it).
    Row(
        "api-registry-update-governed",
        "PATCH",
        "/api/v1/registry/endpoints/{endpoint}/",
        STEWARD_WRITE.format(ok=200),
        data={"vendor": "Example AI", **REASON},
    ),
    Row(
        "api-registry-request",
        "POST",
        "/api/v1/registry/endpoints/{endpoint}/request/",
        STEWARD_WRITE.format(ok=201),
        data={"change": "retire", **REASON},
    ),
    Row(
        "api-registry-request-approve",
        "POST",
        "/api/v1/registry/endpoints/{proposed_endpoint}/request/",
        STEWARD_WRITE.format(ok=201),
        data={"change": "approve", **REASON},
    ),
    Row(
        "api-registry-suspend",
        "POST",
        "/api/v1/registry/endpoints/{endpoint}/suspend/",
        STEWARD_WRITE.format(ok=200),
        data=REASON,
    ),
    # Compliance is Accountable for approving endpoints; the requester may not approve.
    Row(
        "api-endpoint-approval-detail",
        "GET",
        "/api/v1/approvals/requests/{endpoint_request}/",
        "404 200 404 404 404 200 404 404 L",
    ),
    Row(
        "api-endpoint-approval-approve",
        "POST",
        "/api/v1/approvals/requests/{endpoint_request}/decide/",
        "404 403 404 404 404 200 404 404 L",
        data={"verdict": "approve"},
    ),
]

ROWS = WEB + ADMIN + API
GHOST_SLUG = "no-such-thing"
GHOST_ID = 987654


def _values(world) -> dict:
    w = world
    return {
        "alpha": w["alpha"].slug,
        "draft": w["draft"].slug,
        "alpha_pk": w["alpha"].pk,
        "bravo_pk": w["bravo"].pk,
        "metric": w["metric"].pk,
        "draft_metric": w["draft_metric"].pk,
        "bravo_metric_pk": w["bravo_metric"].pk,
        "prompt": w["prompt"].slug,
        "prompt_pk": w["prompt"].pk,
        "bravo_prompt": w["bravo_prompt"].slug,
        "bravo_prompt_pk": w["bravo_prompt"].pk,
        "bravo_suite": w["bravo_suite"].slug,
        "v1_pk": w["v1"].pk,
        "finding": w["finding"].pk,
        "promotion": w["promotion"].pk,
        "helpdesk": w["helpdesk"].slug,
        "helpdesk_prefix": w["helpdesk_key"].partition(".")[0],
        "assignment": w["informed_assignment"].pk,
        "informed_id": world.users["informed"].pk,
        "dataset": w["dataset"].slug,
        "bravo_dataset_pk": w["bravo_dataset"].pk,
        "suite": w["suite"].slug,
        "bravo_suite_pk": w["bravo_suite"].pk,
        "threshold": w["threshold"].pk,
        "artifact": w["artifact"].slug,
        "run": w["run"].pk,
        "bravo_run": w["bravo_run"].pk,
        "endpoint": w["endpoint"].slug,
        "endpoint_pk": w["endpoint"].pk,
        "proposed_endpoint": w["proposed_endpoint"].slug,
        "proposed_endpoint_pk": w["proposed_endpoint"].pk,
        "suspended_endpoint_pk": w["suspended_endpoint"].pk,
        "endpoint_request": w["endpoint_request"].pk,
    }


# Placeholders that name the world's objects; a ghost replaces each by one that does not exist.
# People (informed_id) and uploads stay what they are.
NOT_GHOSTED = {"informed_id", "upload", "helpdesk_prefix"}
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def _fill(template, values: dict, ghost: bool):
    if isinstance(template, dict):
        return {k: _fill(v, values, ghost) for k, v in template.items()}
    if isinstance(template, list):
        return [_fill(v, values, ghost) for v in template]
    if not isinstance(template, str):
        return template
    if template == "{upload}":
        return _upload()

    def value(name):
        real = values[name]
        if ghost and name not in NOT_GHOSTED:
            return GHOST_ID if isinstance(real, int) else GHOST_SLUG
        return real

    whole = PLACEHOLDER.fullmatch(template)
    if whole:
        return value(whole.group(1))
    return PLACEHOLDER.sub(lambda m: str(value(m.group(1))), template)


def _client(world, persona: str) -> Client:
    if persona == "anonymous":
        return Client()
    if persona == "foreign_key":
        return Client(HTTP_AUTHORIZATION=f"Api-Key {world.foreign_key}")
    client = Client()
    client.force_login(world.users[persona])
    return client


def _call(client: Client, row: Row, path: str, data):
    method = row.method.lower()
    if row.method == "GET":
        return client.get(path)
    if row.fmt == "form":
        return client.post(path, data or {})
    if row.fmt == "multipart":
        return client.post(path, data)
    if row.fmt == "raw":
        return getattr(client, method)(path, data, content_type="application/x-ndjson")
    body = json.dumps(data) if data is not None else ""
    return getattr(client, method)(path, body, content_type="application/json")


def _request(world, row: Row, persona: str, *, ghost: bool = False):
    values = _values(world)
    path = _fill(row.path, values, ghost)
    response = _call(_client(world, persona), row, path, _fill(row.data, values, ghost))
    return path, response


def _references(world, row: Row) -> list[str]:
    """The slugs a row names (in its path or body), longest first: answers may echo them."""
    values = _values(world)
    names = PLACEHOLDER.findall(row.path + json.dumps(row.data))
    slugs = {values[n] for n in names if n not in NOT_GHOSTED and isinstance(values[n], str)}
    return sorted(slugs | {GHOST_SLUG}, key=len, reverse=True)


CSRF = re.compile(r'name="csrfmiddlewaretoken" value="[^"]*"')


def _text(response) -> str:
    """The response's body, read once (exports stream)."""
    if not hasattr(response, "matrix_text"):
        raw = (
            b"".join(response.streaming_content)
            if getattr(response, "streaming", False)
            else response.content
        )
        response.matrix_text = raw.decode()
    return response.matrix_text


def _body(response, path: str, references=()) -> str:
    """The body with what legitimately differs between two requests taken out."""
    text = CSRF.sub("", _text(response)).replace(path, "<path>")
    for slug in references:
        text = text.replace(slug, "<ref>")
    return text


def _messages(response) -> list:
    if not hasattr(response, "matrix_messages"):
        response.matrix_messages = list(get_messages(response.wsgi_request))
    return response.matrix_messages


def _error_messages(response) -> list[str]:
    return [str(m) for m in _messages(response) if m.level >= ERROR]


def _check_login(row: Row, response) -> None:
    if row.kind == "api":
        assert response.status_code == 401, response.content[:300]
        return
    assert response.status_code == 302, response.status_code
    login = "/admin/login/" if row.kind == "admin" else "/accounts/login/"
    assert response["Location"].startswith(login), response["Location"]


def _check_same_as_ghost(world, row: Row, persona: str, path: str, response) -> None:
    ghost_path, ghost = _request(world, row, persona, ghost=True)
    assert ghost.status_code == response.status_code, (
        f"a missing object answers {ghost.status_code}, a hidden one {response.status_code}"
    )
    if row.kind == "admin" and response.status_code == 302:
        assert ghost["Location"] == response["Location"]
    references = _references(world, row)
    assert _body(ghost, ghost_path, references) == _body(response, path, references)


CELLS = [
    pytest.param(row, persona, id=f"{row.name}[{persona}]") for row in ROWS for persona in PERSONAS
]


@pytest.mark.parametrize(("row", "persona"), CELLS)
def test_cell(world, row: Row, persona: str):
    expected = row.expected(persona)
    path, response = _request(world, row, persona)
    status = response.status_code
    detail = _text(response)[:400]
    if expected == "L":
        _check_login(row, response)
    elif expected == "D":
        assert status == 302, (status, detail)
        assert not _error_messages(response), _error_messages(response)
        said = [str(m) for m in _messages(response)]
        assert not row.said or any(row.said in m for m in said), said
    elif expected == "G":
        assert status == 302 and response["Location"] == "/admin/", (status, detail)
        _check_same_as_ghost(world, row, persona, path, response)
    elif expected == "404" or expected.endswith("~"):
        assert status == int(expected[:3]), (status, detail)
        _check_same_as_ghost(world, row, persona, path, response)
    else:
        assert status == int(expected), (status, detail)
    if row.shows and status == 200:
        text = _body(response, path)
        for marker, who in row.shows.items():
            if persona in who.split():
                assert marker in text, f"{marker!r} missing for {persona}"
            else:
                assert marker not in text, f"{marker!r} shown to {persona}"


def test_matrix_covers_every_persona_and_is_well_formed():
    """Each row has one cell per persona and a unique name (so each cell is its own test id)."""
    names = [row.name for row in ROWS]
    assert len(names) == len(set(names))
    for row in ROWS:
        assert len(row.cells.split()) == len(PERSONAS), row.name
    assert len(CELLS) == len(ROWS) * len(PERSONAS)
