"""Drift monitoring: re-run each production version's suites on a schedule through its
gateway route, compare with the run that certified that exact content, and alert the
RACI "respond to drift" people when it regressed beyond the suite's tolerance."""

from __future__ import annotations

import logging

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

from apps.approvals import raci
from apps.approvals.choices import Activity, Role
from apps.core import audit
from apps.core.groups import INTEGRATIONS
from apps.core.services import notification_send

from .models import DriftAlert

logger = logging.getLogger(__name__)
MONITOR_USERNAME = "drift-monitor"


def monitor_user():
    """The service account scheduled drift checks run as (integrations: may run any suite)."""
    User = get_user_model()
    user, created = User.objects.get_or_create(
        username=MONITOR_USERNAME, defaults={"first_name": "Drift", "last_name": "Monitor"}
    )
    if created:
        user.set_unusable_password()
        user.save(update_fields=["password"])
    user.groups.add(Group.objects.get_or_create(name=INTEGRATIONS)[0])
    return user


def certified_run(suite, content_hash: str):
    """The newest passing run of the suite on this exact content (what certified it)."""
    from apps.evaluations.models import Run

    return (
        Run.objects.filter(
            suite=suite, content_hash=content_hash, status="completed", verdict="pass"
        )
        .exclude(purpose="drift")
        .order_by("-finished_at")
        .first()
    )


def drift_check_all() -> list[int]:
    """Start a drift run for every production version that has a route and a certified run."""
    from apps.evaluations.choices import ACTIVE_RUN_STATUSES
    from apps.evaluations.models import Run, Suite
    from apps.evaluations.services import run_start
    from apps.gateway.models import Route
    from apps.prompts.models import Label

    actor = monitor_user()
    started = []
    for label in Label.objects.filter(name="production").select_related("version", "prompt"):
        route = Route.objects.select_related("endpoint").filter(prompt=label.prompt).first()
        if route is None:
            continue
        for suite in Suite.objects.filter(prompt=label.prompt):
            baseline = certified_run(suite, label.version.content_hash)
            if baseline is None:
                continue
            if Run.objects.filter(
                suite=suite, purpose="drift", status__in=ACTIVE_RUN_STATUSES
            ).exists():
                continue  # the previous check is still going
            endpoint = {"slug": route.endpoint.slug, "model": route.model}
            try:
                with transaction.atomic():
                    run = run_start(
                        actor=actor,
                        suite=suite,
                        prompt_version=label.version,
                        output_source="generated",
                        endpoint=endpoint,
                        baseline=baseline,
                        note="Scheduled drift check",
                        purpose="drift",
                    )
            except Exception:  # one misconfigured route must not stop the other checks
                logger.exception(
                    "drift check of %s on %s could not start", label.prompt.slug, suite.slug
                )
                continue
            started.append(run.pk)
    return started


def drift_evaluate(run_id: int) -> DriftAlert | None:
    """After a drift run: alert when it is worse than the certified run (once per run)."""
    from apps.evaluations.models import Run

    run = Run.objects.select_related("suite__charter", "prompt_version__prompt", "baseline").get(
        pk=run_id
    )
    comparison = run.comparison or {}
    worse = [name for name, m in comparison.get("metrics", {}).items() if m.get("worse")]
    regressions = comparison.get("regressed_segments", [])
    if not worse and not regressions and run.verdict == "pass":
        return None
    prompt = run.prompt_version.prompt
    parts = []
    if run.verdict != "pass":
        parts.append("the gate now fails")
    if worse:
        parts.append("worse overall: " + ", ".join(worse))
    if regressions:
        parts.append(
            "regressed segments: "
            + ", ".join(f"{r['metric']} {r['key']}={r['value']}" for r in regressions[:5])
        )
    summary = f"{prompt.slug} v{run.prompt_version.number} on {run.suite.slug}: " + "; ".join(parts)
    with transaction.atomic():
        alert, created = DriftAlert.objects.get_or_create(
            run=run,
            defaults={
                "charter": prompt.charter,
                "prompt": prompt,
                "certified_run": run.baseline,
                "summary": summary[:1000],
                "regressions": regressions,
            },
        )
        if not created:
            return alert
        audit.record(
            "drift.alert",
            obj=prompt,
            charter_id=prompt.charter_id,
            data={"run": run.pk, "certified_run": run.baseline_id, "summary": summary},
        )
    people = set()
    for role in (Role.RESPONSIBLE, Role.ACCOUNTABLE):
        people |= raci.members(raci.effective(prompt.charter, Activity.RESPOND_TO_DRIFT, role))
    notification_send(
        recipients=get_user_model().objects.filter(pk__in=people, is_active=True),
        verb="drift.alert",
        title=f"Drift: {prompt.name}",
        body=summary,
        url=run.get_absolute_url(),
        dedupe_key=f"drift:{run.pk}",
    )
    return alert


def run_finalized_received(sender, *, run_id: int, purpose: str, **kwargs) -> None:
    """evaluations.signals.run_finalized: a finished drift run is compared with its certified run."""
    if purpose == "drift":
        drift_evaluate(run_id)
