"""Executing a live prompt for an application: resolve the label, check the rate limit,
render, call the model with timeouts and retries, filter the output with the policy rules,
and record what it cost as platform-health telemetry."""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.core.cache import cache
from django.utils import timezone

from apps.core.choices import stricter_tier
from apps.core.errors import ApplicationError, ValidationFailed
from apps.evaluations import generation
from apps.prompts import permissions as prompt_permissions
from apps.prompts import policy
from apps.prompts import selectors as prompt_selectors
from apps.prompts.choices import PromptStatus
from apps.prompts.models import Label, Prompt
from apps.registry import services as registry_services

from .models import Call, OnlineScore, Route

# Rules that judge outputs: secrets, personal data and the blocked-phrase patterns; the
# structural checks (grounding instruction, tool declarations) are about templates.
OUTPUT_RULE_KINDS = {"secret", "pii", "pattern"}


class GatewayError(ApplicationError):
    """A failed execution, with the HTTP status the API answers."""

    def __init__(self, message: str, *, status_code: int, code: str, **extra) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.code = code
        self.extra = extra


@dataclass
class Execution:
    """What the caller gets back."""

    output: str | None
    version: int
    label: str
    status: str
    findings: list[dict] = field(default_factory=list)
    usage: dict = field(default_factory=dict)
    latency_ms: float | None = None
    cost: str = "0"


def _rate_limited(route: Route, application_id: int | None) -> int | None:
    """Seconds until the next minute when the application is over its limit, else None."""
    if not route.rate_limit_per_minute or application_id is None:
        return None
    minute = int(time.time() // 60)
    key = f"gateway:rate:{route.pk}:{application_id}:{minute}"
    if cache.add(key, 1, timeout=70):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # expired between add and incr
            cache.add(key, 1, timeout=70)
            count = 1
    if count > route.rate_limit_per_minute:
        return 60 - int(time.time() % 60)
    return None


def _filter(text: str, mode: str, risk_level: str) -> tuple[str | None, list[dict], str]:
    from apps.prompts.services import policy_rules

    rules = [r for r in policy_rules() if r.kind in OUTPUT_RULE_KINDS]
    findings = policy.evaluate(rules, [("output", text)], risk_level=risk_level)
    found = [
        {
            "code": f.code,
            "severity": f.severity,
            "message": f.message,
            "start": f.start,
            "end": f.end,
        }
        for f in findings
    ]
    if not found:
        return text, [], "ok"
    if mode == Route.FilterMode.BLOCK:
        return None, found, "blocked"
    if mode == Route.FilterMode.REDACT:
        redacted = text
        for f in sorted((f for f in found if f["start"] is not None), key=lambda f: -f["start"]):
            redacted = redacted[: f["start"]] + f"[redacted {f['code']}]" + redacted[f["end"] :]
        return redacted, found, "redacted"
    return text, found, "flagged"


def _cost(endpoint, usage: dict) -> Decimal:
    tokens_in = int(usage.get("prompt_tokens") or 0)
    tokens_out = int(usage.get("completion_tokens") or 0)
    return (
        endpoint.price_per_1k_input * tokens_in + endpoint.price_per_1k_output * tokens_out
    ) / 1000


def _risk_tier(prompt) -> str:
    """The stricter of the prompt's and its charter's risk tiers (starters have no charter)."""
    return stricter_tier(prompt.risk_level, getattr(prompt.charter, "risk_tier", ""))


def route_check(*, prompt, endpoint, model: str) -> None:
    """Refuse a route on an endpoint this prompt may not use (status, model, risk tier)."""
    try:
        registry_services.usable(endpoint, model, risk_tier=_risk_tier(prompt))
    except registry_services.EndpointRefused as exc:
        raise ValidationFailed(exc.message, errors={"endpoint": [exc.message]}) from exc


def prompt_execute(
    *, actor, key, slug: str, label: str = "production", variables: dict[str, Any]
) -> Execution:
    """Run the version `label` points at with `variables` for the calling application."""
    prompt = Prompt.objects.select_related("charter").filter(slug=slug).first()
    if prompt is None or not prompt_permissions.can(actor, prompt_permissions.VIEW, prompt):
        raise GatewayError("No prompt matches the given query.", status_code=404, code="not_found")
    if prompt.status == PromptStatus.RETIRED:
        raise GatewayError(f"Prompt {slug} is retired.", status_code=410, code="gone")
    found = Label.objects.select_related("version").filter(prompt=prompt, name=label).first()
    if found is None:
        raise GatewayError(
            f"Prompt {slug} has no label {label!r}.", status_code=404, code="not_found"
        )
    codes = sorted(
        set(
            prompt_selectors.unwaived_blocking_findings(found.version).values_list(
                "rule__code", flat=True
            )
        )
    )
    if codes:
        # Never served, whatever the label: the rule codes, never the version's content.
        raise GatewayError(
            f"Prompt {slug} label {label!r} points at v{found.version.number}, which has "
            f"unwaived blocking policy findings ({', '.join(codes)}); it is not served until "
            "compliance waives them.",
            status_code=409,
            code="blocked_by_findings",
            blocking_findings=codes,
        )
    route = Route.objects.select_related("endpoint").filter(prompt=prompt).first()
    if route is None:
        raise GatewayError(
            f"No model endpoint is configured for {slug}; ask its owner to add a gateway route.",
            status_code=409,
            code="no_route",
        )
    version = found.version
    application_id = getattr(key, "application_id", None)
    common = {
        "prompt": prompt,
        "version": version,
        "application_id": application_id,
        "charter_id": prompt.charter_id,
        "label": label,
    }
    wait = _rate_limited(route, application_id)
    if wait is not None:
        Call.objects.create(status="limited", error="rate limit", **common)
        raise GatewayError(
            f"Rate limit of {route.rate_limit_per_minute} executions a minute reached.",
            status_code=429,
            code="rate_limited",
            retry_after=wait,
        )
    if not isinstance(variables, dict):
        raise ValidationFailed(
            "'variables' must be an object.", errors={"variables": ["Expected an object."]}
        )
    try:
        messages = generation.build_messages(
            version.template_kind, version.messages, version.text, version.variables, variables
        )
    except generation.RenderError as exc:
        raise ValidationFailed(
            "The variables do not render this prompt.",
            errors={f"variables.{name}": [str(exc)] for name in (exc.variables or ["_"])},
        ) from exc
    try:
        target = registry_services.call_target(
            route.endpoint, route.model, risk_tier=_risk_tier(prompt), concurrency=1
        )
    except registry_services.EndpointRefused as exc:
        Call.objects.create(status="error", error=exc.message[:500], **common)
        raise GatewayError(
            f"The model endpoint may not be called: {exc.message}",
            status_code=503,
            code="endpoint_unavailable",
        ) from exc
    endpoint = generation.from_target(target)
    payload = generation.build_request(messages, version.model_config, endpoint)
    started = time.perf_counter()
    try:
        completion = generation.complete(endpoint, payload)
    except generation.GenerationError as exc:
        latency = (time.perf_counter() - started) * 1000
        Call.objects.create(status="error", latency_ms=latency, error=str(exc)[:500], **common)
        timed_out = "timed out" in str(exc)
        raise GatewayError(
            f"The model endpoint failed: {exc}",
            status_code=504 if timed_out else 502,
            code="upstream_timeout" if timed_out else "upstream_error",
        ) from exc
    output, findings, status = _filter(completion.text, route.filter_mode, prompt.risk_level)
    cost = _cost(route.endpoint, completion.usage)
    call = Call.objects.create(
        status=status,
        latency_ms=completion.latency_ms,
        tokens_in=int(completion.usage.get("prompt_tokens") or 0),
        tokens_out=int(completion.usage.get("completion_tokens") or 0),
        cost=cost,
        findings=[f["code"] for f in findings],
        **common,
    )
    if output is not None and route.sample_rate and random.random() < route.sample_rate:
        sample = OnlineScore.objects.create(
            call=call, charter_id=prompt.charter_id, output=output, variables=variables
        )
        from django.db import transaction

        from .tasks import gateway_score_sample

        transaction.on_commit(lambda: gateway_score_sample.delay(sample.pk))
    if application_id is not None:
        from apps.prompts.services import consumer_record

        consumer_record(application_id=application_id, prompt_id=prompt.pk, label=label)
    if status == "blocked":
        raise GatewayError(
            "The output was blocked by the content filter.",
            status_code=422,
            code="output_blocked",
            findings=findings,
        )
    return Execution(
        output=output,
        version=version.number,
        label=label,
        status=status,
        findings=findings,
        usage=completion.usage,
        latency_ms=round(completion.latency_ms, 1),
        cost=str(cost),
    )


def platform_health(charter, since) -> dict[str, Any]:
    """Latency p95, error rate, cost per successful call and tokens from the gateway."""
    import numpy as np

    calls = Call.objects.filter(charter_id=charter.pk, created_at__gte=since).exclude(
        status="limited"
    )
    rows = list(calls.values_list("status", "latency_ms", "cost", "tokens_in", "tokens_out"))
    if not rows:
        return {"calls": 0}
    ok = [r for r in rows if r[0] != "error"]
    latencies = [r[1] for r in ok if r[1] is not None]
    total_cost = sum((r[2] for r in rows), Decimal(0))
    return {
        "calls": len(rows),
        "error_rate": round(100 * (len(rows) - len(ok)) / len(rows), 1),
        "latency_p95_ms": round(float(np.percentile(latencies, 95)), 1) if latencies else None,
        "cost_per_success": str(round(total_cost / len(ok), 6)) if ok else None,
        "tokens": sum(r[3] + r[4] for r in rows),
        "filtered": sum(1 for r in rows if r[0] in ("flagged", "redacted", "blocked")),
    }


def online_score(sample_id: int) -> str:
    """Score one sampled execution with the scorers of the suite gating its prompt that need
    no reference answer; the variables' `context` is the grounding passage (idempotent)."""
    from apps.evaluations.models import ModelArtifact, Suite
    from apps.evaluations.scoring import base as scoring
    from apps.evaluations.services.execution import models_for

    sample = (
        OnlineScore.objects.select_related("call")
        .filter(pk=sample_id, scored_at__isnull=True)
        .first()
    )
    if sample is None:
        return "skipped"
    suite = Suite.objects.filter(prompt_id=sample.call.prompt_id).order_by("-updated_at").first()
    if suite is None:
        OnlineScore.objects.filter(pk=sample_id).update(
            error="No suite gates this prompt.", scored_at=timezone.now()
        )
        return "no-suite"
    context = sample.variables.get("context")
    case = scoring.ScoringCase(
        case_id=f"call-{sample.call_id}",
        output=sample.output,
        contexts=(str(context),) if context else (),
        variables=sample.variables,
    )
    artifacts = {
        a.slug: a
        for a in ModelArtifact.objects.filter(slug__in={i.get("artifact") for i in suite.scorers})
    }
    metrics: dict[str, float] = {}
    for item in suite.scorers:
        spec = scoring.get(item["scorer"])
        params = dict(item.get("params") or {})
        values = spec.score([case], params, models_for(item, artifacts))
        metrics.update(values[0] if values else {})
    OnlineScore.objects.filter(pk=sample_id, scored_at__isnull=True).update(
        metrics=metrics, suite_slug=suite.slug, scored_at=timezone.now()
    )
    return "scored"


def online_quality(charter, since) -> dict[str, dict]:
    """Mean and count of each online metric over the window."""
    totals: dict[str, list[float]] = {}
    for metrics in OnlineScore.objects.filter(
        charter_id=charter.pk, created_at__gte=since, scored_at__isnull=False
    ).values_list("metrics", flat=True):
        for name, value in (metrics or {}).items():
            totals.setdefault(name, []).append(value)
    return {name: {"mean": sum(v) / len(v), "count": len(v)} for name, v in sorted(totals.items())}


def endpoint_status_notify(sender, *, endpoint, previous, actor, reason, **kwargs) -> None:
    """Registry signal: tell the owner of every prompt routed to an endpoint that it was
    suspended, retired or reinstated (its executions stop or resume)."""
    from apps.core.services import notification_send

    notice = registry_services.status_change_notice(endpoint, previous)
    if notice is None:
        return
    verb, title, key = notice
    for route in Route.objects.filter(endpoint=endpoint).select_related("prompt__owner"):
        prompt = route.prompt
        if prompt.owner_id is None:
            continue
        notification_send(
            recipients=[prompt.owner],
            verb=verb,
            title=title,
            body=f"Executions of {prompt.slug} go to it. Reason: {reason or 'none given'}",
            url=prompt.get_absolute_url(),
            dedupe_key=f"{key}:route:{route.pk}",
        )
