"""The business owners' charter pages, driven through Django's test client."""

import datetime as dt

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import escape

from apps.charters import services
from apps.charters.choices import CharterStatus, MetricRole
from apps.charters.forms import CharterForm, DependencyFormSet, MetricFormSet
from apps.charters.models import Charter
from apps.charters.views import apply_service_errors, describe_error_key
from apps.core.errors import ValidationFailed
from apps.core.models import Notification
from apps.core.services import notification_send
from tests import factories

pytestmark = pytest.mark.django_db

LIST_URL = reverse("charters:list")
CREATE_URL = reverse("charters:create")


def detail_url(charter):
    return reverse("charters:detail", kwargs={"slug": charter.slug})


def edit_url(charter):
    return reverse("charters:edit", kwargs={"slug": charter.slug})


def transition_url(charter, name):
    return reverse("charters:transition", kwargs={"slug": charter.slug, "name": name})


def as_user(client, user):
    client.force_login(user)
    return client


def metric_row(name, **kw):
    row = {
        "name": name,
        "layer": "output_quality",
        "role": "supporting",
        "direction": "increase",
        "unit": "%",
        "baseline_value": "40",
        "target_value": "70",
        "guardrail_value": "",
        "allowed_segment_keys": "",
        "description": "",
    }
    row.update(kw)
    return row


# What the browser sends for an extra row nobody touched.
BLANK_METRIC = {"role": "supporting"}
BLANK_DEPENDENCY = {"criticality": "medium"}


def form_data(owner, *, metrics=(), dependencies=(), initial=(0, 0), **fields):
    """The POST body of the charter form, management forms included."""
    data = {
        "title": "Invoice triage",
        "business_owner": str(owner.pk),
        "risk_tier": "high",
        "data_sensitivity": "confidential",
        "review_date": (timezone.localdate() + dt.timedelta(days=60)).isoformat(),
        "problem": "Invoices wait three days for a human to route them.",
        "process": "The model proposes a cost centre; the clerk confirms it.",
        "proof": "Routing time falls below one day with no more misroutes.",
        "target_users": "Accounts-payable clerks",
        "intended_use": "Suggest a routing; never pay anything.",
        "retirement_condition": "Retire if misroutes rise above 2%.",
        "save": "1",
    }
    data.update(fields)
    for prefix, rows, initial_count in (
        ("metrics", metrics, initial[0]),
        ("dependencies", dependencies, initial[1]),
    ):
        data.update(
            {
                f"{prefix}-TOTAL_FORMS": str(len(rows)),
                f"{prefix}-INITIAL_FORMS": str(initial_count),
                f"{prefix}-MIN_NUM_FORMS": "0",
                f"{prefix}-MAX_NUM_FORMS": "1000",
            }
        )
        for index, row in enumerate(rows):
            data.update({f"{prefix}-{index}-{key}": value for key, value in row.items()})
    return data


def edit_data(charter, **fields):
    """The POST body the edit page would send back unchanged for `charter`."""
    metrics = [
        metric_row(
            m.name,
            id=str(m.pk),
            layer=m.layer,
            role=m.role,
            direction=m.direction,
            unit=m.unit,
            baseline_value="" if m.baseline_value is None else str(m.baseline_value),
            target_value="" if m.target_value is None else str(m.target_value),
            allowed_segment_keys=", ".join(m.allowed_segment_keys),
        )
        for m in charter.metrics.all()
    ]
    dependencies = [
        {
            "id": str(d.pk),
            "kind": d.kind,
            "name": d.name,
            "criticality": d.criticality,
            "notes": d.notes,
        }
        for d in charter.dependencies.all()
    ]
    base = {
        f: getattr(charter, f)
        for f in ("title", "problem", "process", "proof", "target_users", "intended_use")
    }
    base.update(
        retirement_condition=charter.retirement_condition,
        risk_tier=charter.risk_tier,
        data_sensitivity=charter.data_sensitivity,
        review_date=charter.review_date.isoformat() if charter.review_date else "",
    )
    base.update(fields)
    return form_data(
        charter.business_owner,
        metrics=metrics,
        dependencies=dependencies,
        initial=(len(metrics), len(dependencies)),
        **base,
    )


# --- access -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["charters:list", "charters:create", "inbox"])
def test_anonymous_visitor_is_sent_to_login(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_anonymous_visitor_cannot_open_a_charter(client, charter):
    for url in (detail_url(charter), edit_url(charter)):
        response = client.get(url)
        assert response.status_code == 302
        assert response.url.startswith(reverse("login"))


def test_outsider_gets_404_on_detail_edit_and_transition(client, charter, outsider):
    as_user(client, outsider)
    assert client.get(detail_url(charter)).status_code == 404
    assert client.get(edit_url(charter)).status_code == 404
    assert client.post(edit_url(charter), edit_data(charter, title="Hijacked")).status_code == 404
    assert client.post(transition_url(charter, "submit")).status_code == 404
    charter.refresh_from_db()
    assert (charter.title, charter.status) == ("Support reply drafting", CharterStatus.DRAFT)


def test_compliance_sees_the_charter_but_may_not_edit_it(client, charter, compliance):
    as_user(client, compliance)
    assert client.get(detail_url(charter)).status_code == 200
    response = client.get(edit_url(charter))
    assert response.status_code == 403
    assert "You may not do that" in response.content.decode()
    assert client.post(edit_url(charter), edit_data(charter, title="Changed")).status_code == 403
    charter.refresh_from_db()
    assert charter.title == "Support reply drafting"


def test_transition_view_accepts_only_post(client, charter, owner):
    as_user(client, owner)
    assert client.get(transition_url(charter, "submit")).status_code == 405


# --- list -------------------------------------------------------------------------------------


def test_list_shows_own_and_shared_charters_but_not_others(client, owner, outsider, charter):
    theirs = factories.CharterFactory(business_owner=outsider, title="Oscar's private pilot")
    shared = factories.CharterFactory(business_owner=outsider, title="Shared fraud triage")
    services.charter_share(actor=outsider, charter=shared, user=owner, access="view")

    page = as_user(client, owner).get(LIST_URL).content.decode()

    assert charter.title in page
    assert shared.title in page
    assert escape(theirs.title) not in page
    assert reverse("charters:create") in page  # olivia may create


def test_list_shows_status_risk_owner_metric_count_and_overdue(client, owner):
    factories.CharterFactory(
        business_owner=owner,
        title="Overdue one",
        review_date=timezone.localdate() - dt.timedelta(days=1),
    )
    page = as_user(client, owner).get(LIST_URL).content.decode()
    assert "badge--draft" in page
    assert "badge--risk-medium" in page
    assert "Overdue" in page
    assert owner.get_full_name() in page
    assert '<td class="num">3</td>' in page


def test_list_empty_state_and_no_create_button_for_non_creators(client, engineer):
    page = as_user(client, engineer).get(LIST_URL).content.decode()
    assert "No charters yet" in page
    assert CREATE_URL not in page
    assert client.get(CREATE_URL).status_code == 403


def test_compliance_can_widen_the_list_to_all_charters(client, compliance, charter):
    as_user(client, compliance)
    mine = client.get(LIST_URL).content.decode()
    assert charter.title not in mine
    assert "?scope=all" in mine
    everything = client.get(LIST_URL, {"scope": "all"}).content.decode()
    assert charter.title in everything


def test_scope_all_is_ignored_for_people_without_global_view(client, owner, outsider):
    factories.CharterFactory(business_owner=outsider, title="Not for Olivia")
    page = as_user(client, owner).get(LIST_URL, {"scope": "all"}).content.decode()
    assert "Not for Olivia" not in page
    assert "?scope=all" not in page


@pytest.mark.parametrize("scope", ["", "all"])
def test_list_query_count_does_not_grow_with_rows(client, owner, compliance, scope):
    viewer = compliance if scope else owner
    as_user(client, viewer)
    factories.CharterFactory.create_batch(2, business_owner=owner)
    with CaptureQueriesContext(connection) as two:
        assert client.get(LIST_URL, {"scope": scope}).status_code == 200
    factories.CharterFactory.create_batch(8, business_owner=owner)
    with CaptureQueriesContext(connection) as ten:
        response = client.get(LIST_URL, {"scope": scope})
    assert len(response.context["charters"]) == (10 if scope or viewer == owner else 0)
    assert len(ten) == len(two)


# --- create -----------------------------------------------------------------------------------


def test_create_page_defaults_the_owner_to_the_author(client, owner):
    response = as_user(client, owner).get(CREATE_URL)
    assert response.status_code == 200
    assert response.context["form"]["business_owner"].value() == owner.pk
    assert response.context["metric_formset"].total_form_count() == 3


def test_create_charter_with_metrics_and_dependencies(client, owner):
    data = form_data(
        owner,
        metrics=[
            metric_row(
                "Routing time",
                layer="business_outcome",
                role="primary",
                direction="decrease",
                unit="hours",
                baseline_value="72",
                target_value="12.5",
                guardrail_value="96",
                allowed_segment_keys="language, geography, language",
            ),
            metric_row("Suggestion acceptance"),
            BLANK_METRIC,
        ],
        dependencies=[
            {
                "kind": "system",
                "name": "SAP",
                "criticality": "critical",
                "notes": "Reads invoices.",
            },
            BLANK_DEPENDENCY,
        ],
    )
    response = as_user(client, owner).post(CREATE_URL, data)

    charter = Charter.objects.get(title="Invoice triage")
    assert response.status_code == 302
    assert response.url == detail_url(charter)
    assert charter.business_owner == owner
    assert charter.created_by == owner
    assert charter.risk_tier == "high"
    metrics = {m.name: m for m in charter.metrics.all()}
    assert set(metrics) == {"Routing time", "Suggestion acceptance"}
    primary = metrics["Routing time"]
    assert primary.role == MetricRole.PRIMARY
    assert str(primary.target_value) == "12.5000"
    assert str(primary.guardrail_value) == "96.0000"
    assert primary.allowed_segment_keys == ["language", "geography"]
    assert [(d.kind, d.name, d.criticality) for d in charter.dependencies.all()] == [
        ("system", "SAP", "critical")
    ]
    assert charter.history.latest().history_user == owner

    page = client.get(response.url).content.decode()
    assert "Charter “Invoice triage” created." in page
    assert "72 → 12.5" in page


def test_invalid_post_keeps_what_was_typed_and_creates_nothing(client, owner):
    data = form_data(
        owner,
        title="",
        problem="Typed problem text that must survive",
        metrics=[metric_row("Typed metric name", baseline_value="not-a-number")],
    )
    response = as_user(client, owner).post(CREATE_URL, data)

    assert response.status_code == 200
    page = response.content.decode()
    assert "Typed problem text that must survive" in page
    assert "Typed metric name" in page
    assert "not-a-number" in page
    assert "Some fields need attention." in page
    assert response.context["form"].errors["title"]
    assert response.context["metric_formset"].forms[0].errors["baseline_value"]
    assert not Charter.objects.exists()


def test_service_errors_land_on_the_row_that_caused_them(client, owner):
    data = form_data(
        owner,
        metrics=[metric_row("Handle time"), BLANK_METRIC, metric_row("handle time ")],
        dependencies=[{"kind": "team", "name": "Finance ops", "criticality": "low", "notes": ""}],
    )
    response = as_user(client, owner).post(CREATE_URL, data)

    assert response.status_code == 200
    metric_forms = response.context["metric_formset"].forms
    # The service numbered the rows it received (blank row skipped): its #2 is the form's third row.
    assert metric_forms[2].errors["name"] == ["Duplicates metric #1."]
    assert not metric_forms[0].errors
    page = response.content.decode()
    assert "The charter is not valid." in page
    assert "Finance ops" in page
    assert not Charter.objects.exists()


def test_add_row_button_keeps_everything_and_adds_an_empty_row(client, owner):
    data = form_data(
        owner,
        title="",  # not a save attempt: no "required" error yet
        problem="Half-written problem",
        metrics=[metric_row("Draft metric", baseline_value="oops")],
        dependencies=[BLANK_DEPENDENCY],
    )
    del data["save"]
    data["add_metric"] = "1"
    response = as_user(client, owner).post(CREATE_URL, data)

    assert response.status_code == 200
    assert response.context["metric_formset"].total_form_count() == 2
    assert response.context["dependency_formset"].total_form_count() == 1
    page = response.content.decode()
    for typed in ("Half-written problem", "Draft metric", "oops"):
        assert typed in page
    assert 'name="metrics-1-name"' in page
    assert "This field is required" not in page
    assert "Enter a number" not in page
    assert not Charter.objects.exists()

    data = form_data(owner, metrics=[metric_row("Draft metric")], dependencies=[BLANK_DEPENDENCY])
    del data["save"]
    data["add_dependency"] = "1"
    response = client.post(CREATE_URL, data)
    assert response.context["dependency_formset"].total_form_count() == 2
    assert 'name="dependencies-1-name"' in response.content.decode()


def test_every_kind_of_service_error_key_finds_a_place(owner):
    data = form_data(
        owner,
        metrics=[metric_row("Handle time"), BLANK_METRIC, metric_row("Accuracy")],
        dependencies=[{"kind": "team", "name": "Finance ops", "criticality": "low", "notes": ""}],
    )
    form = CharterForm(data)
    metrics = MetricFormSet(data, prefix="metrics")
    dependencies = DependencyFormSet(data, prefix="dependencies")
    assert form.is_valid() and metrics.is_valid() and dependencies.is_valid()
    rows = {"metrics": metrics.rows(), "dependencies": dependencies.rows()}
    exc = ValidationFailed(
        "The charter is not valid.",
        errors={
            "title": ["Too grand."],
            "metrics": ["Exactly one primary metric is required."],
            "metrics[1].target_value": ["Too low."],
            "metrics[Handle time].layer": ["Wrong layer."],
            "dependencies[0].id": ["No such dependency on this charter."],
            "metrics[7].name": ["Out of range."],
            "slug": ["Taken."],
        },
    )

    apply_service_errors(exc, form, {"metrics": metrics, "dependencies": dependencies}, rows)

    assert form.errors["title"] == ["Too grand."]
    assert metrics.non_form_errors() == ["Exactly one primary metric is required."]
    assert metrics.forms[2].errors["target_value"] == ["Too low."]  # service row 1 = form row 2
    assert metrics.forms[0].errors["layer"] == ["Wrong layer."]
    assert dependencies.forms[0].non_field_errors() == ["No such dependency on this charter."]
    assert form.non_field_errors() == ["Metric #8: name: Out of range.", "Slug: Taken."]


# --- edit -------------------------------------------------------------------------------------


def test_edit_page_shows_the_current_rows(client, owner, charter):
    response = as_user(client, owner).get(edit_url(charter))
    assert response.status_code == 200
    formset = response.context["metric_formset"]
    assert formset.initial_form_count() == 3
    assert formset.total_form_count() == 4  # one empty row to add a metric
    page = response.content.decode()
    assert 'value="Average handle time"' in page
    assert 'value="9.5"' in page


def test_delete_checkbox_removes_a_metric_and_edits_are_saved(client, owner, charter):
    data = edit_data(charter, title="Support reply drafting v2")
    removed = charter.metrics.get(name="Draft acceptance rate")
    index = next(i for i in range(3) if data[f"metrics-{i}-id"] == str(removed.pk))
    data[f"metrics-{index}-DELETE"] = "on"
    data["metrics-0-target_value"] = "8"

    response = as_user(client, owner).post(edit_url(charter), data)

    assert response.status_code == 302
    charter.refresh_from_db()
    assert charter.title == "Support reply drafting v2"
    assert sorted(charter.metrics.values_list("name", flat=True)) == [
        "Average handle time",
        "Time to first draft",
    ]
    assert str(charter.metrics.get(name="Average handle time").target_value) == "8.0000"
    assert charter.history.latest().history_user == owner


def test_editing_a_submitted_charter_explains_how_to_get_it_back(client, owner, charter):
    services.charter_submit(actor=owner, charter=charter)
    as_user(client, owner)
    response = client.get(edit_url(charter))
    assert response.status_code == 409
    page = response.content.decode()
    assert "Only draft charters can be edited; this one is submitted." in page
    assert detail_url(charter) in page
    response = client.post(edit_url(charter), edit_data(charter, title="Sneaky"))
    assert response.status_code == 409
    charter.refresh_from_db()
    assert charter.title == "Support reply drafting"


# --- detail -----------------------------------------------------------------------------------


def test_detail_reads_as_a_one_page_charter(client, owner, charter):
    page = as_user(client, owner).get(detail_url(charter)).content.decode()
    for text in (
        charter.problem,
        charter.process,
        charter.proof,
        charter.target_users,
        charter.intended_use,
        charter.retirement_condition,
        "Business outcome",
        "Workflow efficiency",
        "Output quality",
        "12 → 9.5",
        "Lower is better",
        "Dependency map",
        "Complete — ready to submit for approval.",
        "Submit for approval",
        edit_url(charter),
    ):
        assert escape(text) in page, text
    assert "History (admin)" not in page


def test_detail_readiness_lists_each_gap(client, owner):
    charter = factories.CharterFactory(
        business_owner=owner, complete=False, proof="", review_date=None
    )
    factories.MetricFactory(charter=charter, name="Lonely metric", baseline_value=None)
    page = as_user(client, owner).get(detail_url(charter)).content.decode()
    errors = services.charter_completeness_errors(charter)
    assert {"proof", "review_date", "metrics", "dependencies"} <= set(errors)
    for key, messages in errors.items():
        assert escape(describe_error_key(key)) in page
        for message in messages:
            assert escape(message) in page


def test_submit_with_an_incomplete_charter_lists_each_completeness_error(client, owner):
    charter = factories.CharterFactory(business_owner=owner, complete=False, problem="")
    factories.MetricFactory(charter=charter, name="Only metric", target_value=None)

    response = as_user(client, owner).post(transition_url(charter, "submit"), follow=True)

    charter.refresh_from_db()
    assert charter.status == CharterStatus.DRAFT
    messages = [str(m) for m in response.context["messages"]]
    assert messages[0] == "The charter is not complete enough to submit."
    errors = services.charter_completeness_errors(charter)
    expected = [f"{describe_error_key(k)}: {m}" for k, msgs in errors.items() for m in msgs]
    assert messages[1:] == expected
    assert "Problem: Problem is required before submitting." in messages
    assert "Metric “Only metric”: target value: A target value is required." in messages


# --- transitions ------------------------------------------------------------------------------


def test_submit_withdraw_reject_and_approve_round_trip(client, owner, compliance, charter):
    def act(user, name, **data):
        response = as_user(client, user).post(transition_url(charter, name), data, follow=True)
        assert response.status_code == 200
        charter.refresh_from_db()
        return response

    act(owner, "submit")
    assert charter.status == CharterStatus.SUBMITTED
    assert charter.history.latest().history_user == owner

    act(owner, "withdraw")
    assert charter.status == CharterStatus.DRAFT

    act(owner, "submit")
    response = act(compliance, "reject")
    assert charter.status == CharterStatus.SUBMITTED
    assert "A reason is required to reject." in response.content.decode()

    response = act(compliance, "reject", reason="The baseline has no source.")
    assert charter.status == CharterStatus.DRAFT
    assert charter.status_reason == "The baseline has no source."
    assert charter.history.latest().history_user == compliance
    assert (
        "The baseline has no source."
        in as_user(client, owner).get(detail_url(charter)).content.decode()
    )

    act(owner, "submit")
    page = as_user(client, compliance).get(detail_url(charter)).content.decode()
    assert transition_url(charter, "approve") in page
    assert 'name="reason"' in page  # reject needs one
    response = act(compliance, "approve")
    assert charter.status == CharterStatus.APPROVED
    assert charter.approved_by == compliance
    assert charter.history.latest().history_user == compliance
    assert "is now approved" in response.content.decode()


def test_wrong_state_transition_shows_the_reason(client, owner, charter):
    response = as_user(client, owner).post(transition_url(charter, "withdraw"), follow=True)
    # Olivia may change the charter, so the refusal is about its state, not her rights.
    assert (
        "Cannot withdraw a charter that is draft; it must be submitted."
        in response.content.decode()
    )


def test_owner_cannot_approve_her_own_charter(client, owner, charter):
    services.charter_submit(actor=owner, charter=charter)
    response = as_user(client, owner).post(transition_url(charter, "approve"))
    assert response.status_code == 403
    charter.refresh_from_db()
    assert charter.status == CharterStatus.SUBMITTED
    assert (
        transition_url(charter, "approve") not in client.get(detail_url(charter)).content.decode()
    )


def test_compliance_officer_cannot_approve_a_charter_she_owns(client, compliance):
    own = factories.CharterFactory(business_owner=compliance)
    services.charter_submit(actor=compliance, charter=own)
    response = as_user(client, compliance).post(transition_url(own, "approve"))
    assert response.status_code == 403
    assert "cannot decide on their own charter" in response.content.decode()
    own.refresh_from_db()
    assert own.status == CharterStatus.SUBMITTED


def test_submit_notifies_compliance_in_their_inbox(
    client, owner, compliance, charter, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        as_user(client, owner).post(transition_url(charter, "submit"))
    page = as_user(client, compliance).get(reverse("inbox")).content.decode()
    assert "Charter “Support reply drafting” is now submitted" in page


# --- sharing ----------------------------------------------------------------------------------


def test_share_and_unshare_through_the_detail_page(client, owner, outsider, charter):
    as_user(client, owner)
    response = client.post(
        reverse("charters:share", kwargs={"slug": charter.slug}),
        {"username": "oscar", "access": "view"},
        follow=True,
    )
    assert "oscar can now view this charter." in response.content.decode()

    as_user(client, outsider)
    assert client.get(detail_url(charter)).status_code == 200
    assert client.get(edit_url(charter)).status_code == 403

    as_user(client, owner)
    client.post(reverse("charters:unshare", kwargs={"slug": charter.slug}), {"username": "oscar"})
    as_user(client, outsider)
    assert client.get(detail_url(charter)).status_code == 404


def test_business_owner_access_cannot_be_removed(client, owner, charter):
    response = as_user(client, owner).post(
        reverse("charters:unshare", kwargs={"slug": charter.slug}),
        {"username": "olivia"},
        follow=True,
    )
    assert escape("The business owner's access cannot be removed.") in response.content.decode()
    assert response.context["charter"] == charter


def test_share_with_an_unknown_user_says_so(client, owner, charter):
    response = as_user(client, owner).post(
        reverse("charters:share", kwargs={"slug": charter.slug}),
        {"username": "nobody", "access": "change"},
        follow=True,
    )
    assert "There is no user called “nobody”." in response.content.decode()


def test_staff_see_the_admin_history_link(client, owner, charter):
    owner.is_staff = True
    owner.save(update_fields=["is_staff"])
    page = as_user(client, owner).get(detail_url(charter)).content.decode()
    assert reverse("admin:index") in page
    try:
        history = reverse("admin:charters_charter_history", args=[charter.pk])
    except NoReverseMatch:  # the charter admin is not registered yet
        return
    assert history in page


def test_viewer_cannot_share(client, compliance, outsider, charter):
    response = as_user(client, compliance).post(
        reverse("charters:share", kwargs={"slug": charter.slug}),
        {"username": "oscar", "access": "view"},
    )
    assert response.status_code == 403


# --- login, logout, inbox ---------------------------------------------------------------------


def test_login_and_logout(client, owner, password):
    login = reverse("login")
    assert "Sign in" in client.get(login).content.decode()

    response = client.post(login, {"username": "olivia", "password": "wrong"})
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()

    response = client.post(login, {"username": "olivia", "password": password})
    assert response.status_code == 302
    assert response.url == LIST_URL
    page = client.get(LIST_URL).content.decode()
    assert owner.get_full_name() in page
    assert f'action="{reverse("logout")}"' in page

    response = client.post(reverse("logout"))
    assert response.status_code == 302
    assert response.url == login
    assert client.get(LIST_URL).status_code == 302


def test_inbox_lists_notifications_and_marks_them_read(client, owner):
    notification_send(
        recipients=[owner],
        verb="charter.approve",
        title="Charter “Invoice triage” is now approved",
        body="carl approved it.",
        url="/charters/invoice-triage/",
        dedupe_key="test:1",
    )
    as_user(client, owner)
    page = client.get(reverse("inbox")).content.decode()
    assert "Charter “Invoice triage” is now approved" in page
    assert "notification--unread" in page
    assert 'aria-label="1 unread"' in page

    response = client.post(reverse("inbox-read"))
    assert response.status_code == 302
    assert not Notification.objects.filter(recipient=owner, read_at__isnull=True).exists()
    page = client.get(reverse("inbox")).content.decode()
    assert "notification--unread" not in page
    assert "You are all caught up." in page
