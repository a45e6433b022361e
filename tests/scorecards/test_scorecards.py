"""Telemetry ingest, scorecard statuses and segments, recommendations, portfolio, pages."""

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect
from rest_framework.test import APIClient

from apps.charters.models import Metric
from apps.core import groups
from apps.scorecards import selectors, services
from apps.scorecards.models import Observation
from tests.browser import log_in
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def handle_time(charter):
    """Olivia's only metric: minutes per ticket, lower is better, 12 → 9.5, guardrail 14."""
    charter.metrics.all().delete()
    return Metric.objects.create(
        charter=charter,
        name="Handle time",
        layer="business_outcome",
        role="primary",
        direction="decrease",
        unit="min",
        baseline_value=Decimal("12"),
        target_value=Decimal("9.5"),
        guardrail_value=Decimal("14"),
        allowed_segment_keys=["language"],
    )


def _obs(metric, value, *, days_ago=1, key=None, **segments):
    at = timezone.now() - dt.timedelta(days=days_ago)
    return {
        "metric_id": metric.pk,
        "value": value,
        "time": at.isoformat(),
        "segments": segments,
        "idempotency_key": key or f"{metric.pk}-{value}-{days_ago}-{segments}",
    }


def test_ingest_keeps_good_items_reports_bad_ones_and_counts_resends_once(
    owner, charter, handle_time
):
    items = [
        _obs(handle_time, 9.0, language="en"),
        {
            "charter": charter.slug,
            "metric": "Handle time",
            "value": "fast",
            "time": timezone.now().isoformat(),
            "idempotency_key": "x",
        },
        {
            "charter": charter.slug,
            "metric": "Nope",
            "value": 1,
            "time": timezone.now().isoformat(),
            "idempotency_key": "y",
        },
        _obs(handle_time, 9.5, colour="red"),
        {**_obs(handle_time, 9.1), "time": "yesterday"},
        {**_obs(handle_time, 9.2), "idempotency_key": ""},
    ]
    result = services.telemetry_ingest(actor=owner, observations=items)
    assert result["accepted"]["observations"] == 1
    reasons = {r["index"]: r["error"] for r in result["rejected"]}
    assert reasons[1] == "'value' must be a finite number."
    assert reasons[2].startswith("No such metric")
    assert reasons[3] == "Segment key(s) not allowed for this metric: colour."
    assert "not an ISO 8601 timestamp" in reasons[4]
    assert reasons[5].startswith("'idempotency_key' is required")
    again = services.telemetry_ingest(actor=owner, observations=[items[0], items[0]])
    assert again["accepted"]["observations"] == 0 and again["duplicates"]["observations"] == [0, 1]
    assert Observation.objects.count() == 1


def test_the_api_answers_207_with_what_was_kept_and_hides_other_charters(
    charter, handle_time, outsider
):
    bot = UserFactory(username="zendesk-bot", groups=[groups.INTEGRATIONS])
    from apps.charters.services import charter_share

    charter_share(actor=charter.business_owner, charter=charter, user=bot, access="view")
    api = APIClient()
    api.force_authenticate(bot)
    response = api.post(
        "/api/v1/telemetry",
        {"observations": [_obs(handle_time, 9), {"metric_id": handle_time.pk}]},
        format="json",
    )
    assert response.status_code == 207 and response.json()["accepted"]["observations"] == 1
    api.force_authenticate(outsider)
    refused = api.post(
        "/api/v1/telemetry", {"observations": [_obs(handle_time, 8, key="o")]}, format="json"
    )
    assert refused.status_code == 400 and "observation[0]" in refused.json()["errors"]


def test_workflow_events_become_cycle_time_and_rates(owner, charter):
    now = timezone.now() - dt.timedelta(hours=5)
    events = []
    for i, extra in enumerate(["overridden", "escalated", None, "reopened"]):
        start = now + dt.timedelta(minutes=i)
        events += [
            {
                "charter": charter.slug,
                "task_id": f"T{i}",
                "event": "started",
                "time": start.isoformat(),
            },
            {
                "charter": charter.slug,
                "task_id": f"T{i}",
                "event": "finished",
                "time": (start + dt.timedelta(minutes=10)).isoformat(),
            },
        ]
        if extra:
            events.append(
                {
                    "charter": charter.slug,
                    "task_id": f"T{i}",
                    "event": extra,
                    "time": start.isoformat(),
                }
            )
    events.append(
        {"charter": charter.slug, "task_id": "T9", "event": "started", "time": now.isoformat()}
    )
    services.telemetry_ingest(actor=owner, events=events)
    workflow = selectors.scorecard(charter)["workflow"]
    assert workflow == {
        "tasks_finished": 4,
        "cycle_time_minutes": 10.0,
        "human_override_rate": 25.0,
        "escalation_rate": 25.0,
        "reopen_rate": 25.0,
    }


@pytest.mark.parametrize(
    ("direction", "value", "expected"),
    [
        ("decrease", 9.0, "on_track"),
        ("decrease", 11.0, "at_risk"),
        ("decrease", 12.5, "off_track"),
        ("decrease", 15.0, "off_track"),
        ("increase", 9.6, "off_track"),
        ("increase", 12.5, "at_risk"),
        ("increase", 5, "off_track"),
        ("decrease", None, "no_data"),
    ],
)
def test_status_follows_the_metric_direction(handle_time, direction, value, expected):
    handle_time.direction = direction
    if direction == "increase":
        handle_time.baseline_value, handle_time.target_value, handle_time.guardrail_value = (
            Decimal("12"),
            Decimal("14"),
            Decimal("6"),
        )
    assert selectors.status_of(handle_time, value) == expected


def test_segments_show_where_it_fails_and_the_call_follows_the_rules(owner, charter, handle_time):
    items = []
    for week in range(6):
        for j in range(5):
            items.append(
                _obs(
                    handle_time,
                    9.0,
                    days_ago=week * 7 + j % 3 + 1,
                    key=f"en{week}{j}",
                    language="en",
                )
            )
            items.append(
                _obs(
                    handle_time,
                    9.2,
                    days_ago=week * 7 + j % 3 + 1,
                    key=f"de{week}{j}",
                    language="de",
                )
            )
    services.telemetry_ingest(actor=owner, observations=items)
    card = selectors.scorecard(charter)
    metric = card["metrics"][0]
    assert metric["status"] == "on_track" and metric["count"] > 0
    assert metric["p10"] <= metric["p50"] <= metric["p90"]
    assert sum(metric["histogram"]["counts"]) == metric["count"]
    assert card["recommendation"]["call"] == "scale"
    # German drifts above the guardrail: the segment fails, and a red guardrail pauses.
    services.telemetry_ingest(
        actor=owner,
        observations=[
            _obs(handle_time, 30.0, days_ago=1, key=f"bad{i}", language="de") for i in range(40)
        ],
    )
    card = selectors.scorecard(charter)
    failing = card["metrics"][0]["failing_segments"]
    assert [(s["key"], s["value"]) for s in failing] == [("language", "de")]
    assert card["recommendation"] == {
        "call": "pause",
        "rule": "Any guardrail red → pause (Handle time).",
    }


def test_portfolio_api_and_csv(owner, charter, handle_time):
    services.telemetry_ingest(actor=owner, observations=[_obs(handle_time, 11.0)])
    api = APIClient()
    api.force_authenticate(owner)
    rows = api.get("/api/v1/portfolio/").json()
    assert rows[0]["slug"] == charter.slug and rows[0]["primary_status"] == "at_risk"
    text = api.get("/api/v1/portfolio/?as=csv").content.decode()
    assert text.splitlines()[0].startswith("slug,title,status") and charter.slug in text


def test_pages_render_for_the_owner_and_hide_from_outsiders(
    client, owner, outsider, charter, handle_time
):
    services.telemetry_ingest(actor=owner, observations=[_obs(handle_time, 10.0, language="de")])
    client.force_login(owner)
    page = client.get(f"/scorecards/{charter.slug}/").content.decode()
    assert (
        "Recommendation:" in page and 'data-metric="Handle time"' in page and "chart--trend" in page
    )
    assert "Support reply drafting" in client.get("/scorecards/").content.decode()
    client.force_login(outsider)
    assert client.get(f"/scorecards/{charter.slug}/").status_code == 404
    assert "Support reply drafting" not in client.get("/scorecards/").content.decode()


@pytest.mark.browser
@pytest.mark.django_db(transaction=True)
def test_demo_scorecard_and_portfolio_in_a_browser(page, password):
    from apps.workspace.demo import demo_setup

    demo_setup(evaluations=False)
    log_in(page, "olivia", "olivia-demo-2026")
    page.goto("/scorecards/support-reply-drafting/")
    handle = page.locator('[data-metric="Average handle time"]')
    expect(handle.locator("svg.chart--trend circle")).to_have_count(14)
    expect(handle.locator("svg.chart--histogram rect")).to_have_count(16)
    expect(handle.locator('tr[data-segment="language=de"]')).to_have_class("heat heat--off_track")
    expect(handle.locator('tr[data-segment="language=en"]')).not_to_have_class(
        "heat heat--off_track"
    )
    expect(page.locator("#recommendation")).to_contain_text("Recommendation")
    page.goto("/scorecards/")
    expect(page.locator('tr[data-charter="support-reply-drafting"]')).to_contain_text(
        "Average handle time"
    )
    assert page.errors == []


def _metric_row(status, *, role="primary", crossed=False, weeks=()):
    return {
        "name": "M",
        "role": role,
        "status": status,
        "guardrail_crossed": crossed,
        "trend": [{"value": 1.0, "status": s} for s in weeks],
    }


@pytest.mark.parametrize(
    ("rows", "call"),
    [
        ([_metric_row("on_track", weeks=["on_track"] * 4)], "scale"),
        ([_metric_row("on_track", weeks=["at_risk"] + ["on_track"] * 3)], "continue"),
        ([_metric_row("off_track", weeks=["off_track"] * 4)], "rework"),
        (
            [
                _metric_row("on_track", weeks=["on_track"] * 4),
                _metric_row("off_track", role="supporting", crossed=True),
            ],
            "pause",
        ),
        ([_metric_row("no_data")], "continue"),
    ],
)
def test_recommendation_rules(rows, call):
    assert selectors.recommendation(rows, weeks=4)["call"] == call


def test_sunset_reminders_reach_consuming_application_owners(owner, charter, compliance):
    from apps.core.models import Notification
    from apps.prompts import services as prompt_services
    from apps.prompts.models import Consumer
    from apps.prompts.tasks import prompt_sunset_reminders
    from tests.approvals.conftest import make_version
    from tests.prompts.factories import PromptFactory

    charter.status = "pilot"
    charter.save(update_fields=["status"])
    prompt = PromptFactory(charter=charter, owner=owner)
    make_version(owner, compliance, prompt)
    ada = UserFactory(username="ada", groups=[groups.PLATFORM])
    app = prompt_services.application_create(actor=ada, name="Helpdesk")
    now = timezone.now()
    Consumer.objects.create(
        application=app, prompt=prompt, label="production", first_seen=now, last_seen=now
    )
    prompt_services.prompt_deprecate(
        actor=owner,
        prompt=prompt,
        reason="Replaced",
        sunset_date=timezone.localdate() + dt.timedelta(days=7),
    )
    assert prompt_sunset_reminders() >= 1
    assert prompt_sunset_reminders() == 0
    assert Notification.objects.filter(recipient=ada, verb="prompt.sunset_soon").exists()


def test_rollups_match_the_raw_observations_and_rebuild_from_them(owner, charter, handle_time):
    import numpy as np

    from apps.scorecards import rollups
    from apps.scorecards.models import Rollup

    values = [8.0 + (i % 50) / 10 for i in range(500)]
    services.telemetry_ingest(
        actor=owner,
        observations=[
            _obs(handle_time, v, days_ago=1 + i % 20, key=f"r{i}", language="en" if i % 2 else "de")
            for i, v in enumerate(values)
        ],
    )
    metric = selectors.scorecard(charter)["metrics"][0]
    assert metric["count"] == 500
    assert metric["current"] == pytest.approx(np.mean(values))
    width = (
        handle_time.rollup_spec.high - handle_time.rollup_spec.low
    ) / handle_time.rollup_spec.bins
    assert metric["p50"] == pytest.approx(np.percentile(values, 50), abs=width)
    means = {(s["key"], s["value"]): s["mean"] for s in metric["segments"]}
    assert means[("language", "en")] == pytest.approx(np.mean(values[1::2]))
    before = list(
        Rollup.objects.order_by("pk").values_list("day", "segment_key", "segment_value", "count")
    )
    assert rollups.rebuild([handle_time.pk]) == 500
    after = list(
        Rollup.objects.order_by("day", "segment_key", "segment_value").values_list(
            "day", "segment_key", "segment_value", "count"
        )
    )
    assert sorted(before) == after
