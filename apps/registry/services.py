"""Writes of the model registry, and the one way any app obtains what it needs to call a model.

`call_target(endpoint, model, risk_tier=…)` is the only door to a model server: it refuses an
endpoint that is not approved, a model it does not serve and a risk tier its data boundary
does not allow, and hands back the address, the credential bound to that endpoint alone and
an HTTP opener that will reach that host only (apps/core/egress.py).

Status changes other than suspension, and edits of the fields that say where data goes
(`GOVERNED_FIELDS`), are decided through approval requests: the approvals app calls
`endpoint_apply` once the Accountable approved. Entry points never call it themselves.
"""

from __future__ import annotations

import socket
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from apps.core import audit, egress
from apps.core.choices import RiskTier
from apps.core.errors import InvalidTransition, ValidationFailed
from apps.core.history import save_with_history

from . import credentials, permissions
from .choices import DECIDED_CHANGES, GOVERNED_FIELDS, DataLocation, EndpointStatus, TrainingUse
from .models import ModelEndpoint
from .signals import endpoint_status_changed

EDITABLE_FIELDS = (
    "name",
    "description",
    "price_per_1k_input",
    "price_per_1k_output",
    "timeout_s",
    "max_retries",
    "concurrency",
    *GOVERNED_FIELDS,
    "allow_private_reason",
)


class EndpointRefused(Exception):
    """This endpoint may not be called for this purpose now; `message` says why."""

    def __init__(self, message: str, *, code: str = "endpoint_refused") -> None:
        super().__init__(message)
        self.message = message
        self.code = code


@dataclass(frozen=True)
class CallTarget:
    """Everything a caller needs to reach one model on one approved endpoint."""

    endpoint: ModelEndpoint
    base_url: str
    model: str
    timeout_s: float
    max_retries: int
    concurrency: int
    api_key: str = field(default="", repr=False)
    opener: Any = field(default=None, repr=False, compare=False)


def tier_locations() -> dict[str, list[str]]:
    """Per risk tier, the data locations a charter of that tier may send data to."""
    configured = getattr(settings, "REGISTRY_TIER_DATA_LOCATIONS", None)
    if configured is None:
        configured = {RiskTier.CRITICAL: [DataLocation.ON_PREMISES]}
    return {str(k): list(v) for k, v in configured.items()}


def tier_problem(endpoint: ModelEndpoint, risk_tier: str | None) -> str | None:
    """Why a charter of `risk_tier` may not use `endpoint`, or None."""
    if not risk_tier:
        return None
    if risk_tier not in (endpoint.risk_tiers or []):
        return f"Endpoint {endpoint.slug} is not approved for {risk_tier}-risk charters."
    allowed = tier_locations().get(risk_tier)
    if allowed is not None and endpoint.data_location not in allowed:
        where = ", ".join(
            DataLocation(v).label.lower() for v in allowed if v in DataLocation.values
        )
        return (
            f"{risk_tier.capitalize()}-risk charters may only use endpoints whose data stays "
            f"{where or 'nowhere'}; {endpoint.slug} is {endpoint.get_data_location_display().lower()}."
        )
    return None


def usable(
    endpoint: ModelEndpoint | None, model: str = "", *, risk_tier: str | None = None
) -> ModelEndpoint:
    """`endpoint` when it may be called for `model` by a charter of `risk_tier`; else refuse."""
    if endpoint is None:
        raise EndpointRefused("No such model endpoint in the registry.", code="not_found")
    if endpoint.status != EndpointStatus.APPROVED:
        raise EndpointRefused(
            f"Endpoint {endpoint.slug} is {endpoint.get_status_display().lower()}, not approved.",
            code=f"endpoint_{endpoint.status}",
        )
    if not endpoint.serves(model):
        raise EndpointRefused(
            f"Endpoint {endpoint.slug} does not serve model {model!r}; it serves "
            + (", ".join(endpoint.model_names) or "no registered model")
            + ".",
            code="model_not_served",
        )
    problem = tier_problem(endpoint, risk_tier)
    if problem:
        raise EndpointRefused(problem, code="risk_tier")
    return endpoint


def call_target(
    endpoint: ModelEndpoint | None,
    model: str = "",
    *,
    risk_tier: str | None = None,
    concurrency: int | None = None,
) -> CallTarget:
    """The address, credential and opener for one call; refuses what the registry does not allow."""
    endpoint = usable(endpoint, model, risk_tier=risk_tier)
    return CallTarget(
        endpoint=endpoint,
        base_url=endpoint.base_url,
        model=model,
        timeout_s=endpoint.timeout_s,
        max_retries=endpoint.max_retries,
        concurrency=min(concurrency or endpoint.concurrency, endpoint.concurrency) or 1,
        api_key=credentials.value_for(endpoint),
        opener=egress.build_opener(
            base_url=endpoint.base_url,
            allow_private=endpoint.allow_private,
            proxy=endpoint.proxy,
        ),
    )


# --- writes --------------------------------------------------------------------------------


def _address_problem(url: str, *, allow_private: bool) -> str | None:
    """Why `url` may not be an endpoint's address, checked now (the egress client checks the
    resolved address again at every connection).

    A name this server cannot resolve is accepted: in air-gapped sites the workers may see a
    DNS the web does not, and no connection is made to a name until its address is checked."""
    try:
        egress.check_url(url, allow_private=allow_private, resolve=False)
        host = urllib.parse.urlsplit(url).hostname or ""
        try:
            socket.getaddrinfo(host, None)
        except (OSError, UnicodeError):
            return None
        egress.check_url(url, allow_private=allow_private, resolve=True)
    except egress.EgressRefused as exc:
        return exc.message
    return None


def _text(value: Any, name: str, errors: dict, *, limit: int, required: bool = False) -> str:
    text = "" if value is None else str(value).strip()
    if required and not text:
        errors.setdefault(name, []).append("This field is required.")
    if len(text) > limit:
        errors.setdefault(name, []).append(f"At most {limit} characters.")
    return text


def _number(value: Any, name: str, errors: dict, cast, low, high):
    try:
        number = cast(value)
    except (TypeError, ValueError, InvalidOperation):
        errors.setdefault(name, []).append("Must be a number.")
        return None
    if not low <= number <= high:
        errors.setdefault(name, []).append(f"Must be between {low} and {high}.")
    return number


def _clean(fields: Mapping[str, Any], *, current: ModelEndpoint | None) -> dict[str, Any]:
    """Validate the given fields (merged over `current`) and return them cleaned."""
    unknown = sorted(set(fields) - set(EDITABLE_FIELDS) - {"slug"})
    errors: dict[str, list[str]] = {name: ["Not a field of a model endpoint."] for name in unknown}
    cleaned: dict[str, Any] = {}
    merged = {
        name: getattr(current, name)
        if current is not None
        else ModelEndpoint._meta.get_field(name).get_default()
        for name in EDITABLE_FIELDS
    }
    merged.update({k: v for k, v in fields.items() if k in EDITABLE_FIELDS})
    for name, limit, required in (
        ("name", 120, True),
        ("description", 5000, False),
        ("vendor", 120, True),
        ("region", 80, False),
        ("terms", 5000, False),
        ("credential", 100, False),
        ("allow_private_reason", 300, False),
        ("proxy", 300, False),
        ("base_url", 300, True),
    ):
        cleaned[name] = _text(merged[name], name, errors, limit=limit, required=required)
    for name, choices in (("data_location", DataLocation), ("training_use", TrainingUse)):
        if merged[name] not in choices.values:
            errors.setdefault(name, []).append(f"Choose one of: {', '.join(choices.values)}.")
        cleaned[name] = merged[name]
    names = merged["model_names"]
    if isinstance(names, str):
        names = [n for n in (part.strip() for part in names.replace("\n", ",").split(",")) if n]
    if not isinstance(names, list | tuple) or not all(
        isinstance(n, str) and n.strip() for n in names
    ):
        errors.setdefault("model_names", []).append("Give a list of model names.")
        names = []
    cleaned["model_names"] = sorted({n.strip()[:200] for n in names})
    tiers = merged["risk_tiers"]
    if isinstance(tiers, str):
        tiers = [t.strip() for t in tiers.split(",") if t.strip()]
    if not isinstance(tiers, list | tuple) or not set(tiers) <= set(RiskTier.values):
        errors.setdefault("risk_tiers", []).append(f"Choose among: {', '.join(RiskTier.values)}.")
        tiers = []
    cleaned["risk_tiers"] = [t for t in RiskTier.values if t in set(tiers)]
    cleaned["allow_private"] = bool(merged["allow_private"])
    for name, cast, low, high in (
        ("timeout_s", float, 1, 600),
        ("max_retries", int, 0, 10),
        ("concurrency", int, 1, 64),
        ("price_per_1k_input", Decimal, 0, Decimal("10000")),
        ("price_per_1k_output", Decimal, 0, Decimal("10000")),
    ):
        cleaned[name] = _number(merged[name], name, errors, cast, low, high)
    retention = merged["retention_days"]
    if retention in ("", None):
        cleaned["retention_days"] = None
    else:
        cleaned["retention_days"] = _number(retention, "retention_days", errors, int, 0, 36500)
    if cleaned["allow_private"] and not cleaned["allow_private_reason"]:
        errors.setdefault("allow_private_reason", []).append(
            "Say why this endpoint may use a private address (it is recorded)."
        )
    if not cleaned["allow_private"]:
        cleaned["allow_private_reason"] = ""
    if cleaned["base_url"]:
        problem = _address_problem(cleaned["base_url"], allow_private=cleaned["allow_private"])
        if problem:
            errors.setdefault("base_url", []).append(problem)
        cleaned["base_url"] = cleaned["base_url"].rstrip("/")
    if cleaned["proxy"]:
        try:
            egress.check_url(cleaned["proxy"], allow_private=True, resolve=False)
        except egress.EgressRefused as exc:
            errors.setdefault("proxy", []).append(exc.message)
    slug = (current.slug if current is not None else "") or str(fields.get("slug") or "").strip()
    if current is None:
        slug = slugify(slug or cleaned["name"])[:80]
        if not slug:
            errors.setdefault("slug", []).append("Give a slug or a name with letters.")
        elif ModelEndpoint.objects.filter(slug=slug).exists():
            errors.setdefault("slug", []).append(f"An endpoint with slug {slug!r} exists.")
        cleaned["slug"] = slug
    problem = credentials.binding_problem(cleaned["credential"], slug)
    if problem:
        errors.setdefault("credential", []).append(problem)
    if errors:
        raise ValidationFailed("The model endpoint is not valid.", errors=errors)
    return cleaned


@transaction.atomic
def endpoint_propose(*, actor, fields: Mapping[str, Any]) -> ModelEndpoint:
    """Register a model endpoint as proposed; nothing may call it until it is approved."""
    permissions.require(actor, permissions.PROPOSE)
    cleaned = _clean(fields, current=None)
    endpoint = ModelEndpoint(created_by=actor, **cleaned)
    save_with_history(endpoint, actor=actor, reason="Proposed")
    audit.record(
        "registry.endpoint.propose",
        actor=actor,
        obj=endpoint,
        data={"base_url": endpoint.base_url, "allow_private": endpoint.allow_private},
    )
    return endpoint


def governed_changes(endpoint: ModelEndpoint, fields: Mapping[str, Any]) -> dict[str, Any]:
    """The cleaned fields that differ from `endpoint` and need a decision to change."""
    cleaned = _clean(fields, current=endpoint)
    return {
        name: cleaned[name]
        for name in (*GOVERNED_FIELDS, "allow_private_reason")
        if name in cleaned and cleaned[name] != getattr(endpoint, name)
    }


@transaction.atomic
def endpoint_edit(*, actor, endpoint: ModelEndpoint, fields: Mapping[str, Any]) -> ModelEndpoint:
    """Edit an endpoint: anything while proposed, only the undecided fields (name, prices,
    timeouts) once approved. Edits of where data goes are requests (approvals app)."""
    permissions.require(actor, permissions.PROPOSE)
    endpoint = ModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.status == EndpointStatus.RETIRED:
        raise InvalidTransition("A retired endpoint cannot be edited.")
    cleaned = _clean(fields, current=endpoint)
    governed = {
        k for k in (*GOVERNED_FIELDS, "allow_private_reason") if cleaned[k] != getattr(endpoint, k)
    }
    if governed and endpoint.status != EndpointStatus.PROPOSED:
        raise InvalidTransition(
            "Changing "
            + ", ".join(sorted(governed))
            + " of an endpoint past proposal needs approval: ask for the change instead."
        )
    changed = [k for k in EDITABLE_FIELDS if cleaned[k] != getattr(endpoint, k)]
    if not changed:
        return endpoint
    for name in changed:
        setattr(endpoint, name, cleaned[name])
    save_with_history(
        endpoint, actor=actor, reason="Edited", update_fields=[*changed, "updated_at"]
    )
    return endpoint


def _set_status(endpoint: ModelEndpoint, *, actor, status: str, reason: str, verb: str) -> None:
    previous = endpoint.status
    endpoint.status, endpoint.status_reason = status, (reason or "")[:300]
    save_with_history(
        endpoint,
        actor=actor,
        reason=f"{previous} → {status}",
        update_fields=["status", "status_reason", "updated_at"],
    )
    audit.record(
        verb,
        actor=actor,
        obj=endpoint,
        data={"from": previous, "to": status, "reason": reason},
    )
    transaction.on_commit(
        lambda: endpoint_status_changed.send(
            sender=ModelEndpoint, endpoint=endpoint, previous=previous, actor=actor, reason=reason
        )
    )


def change_problem(endpoint: ModelEndpoint, change: str) -> str | None:
    """Why `change` cannot be asked for on `endpoint` in its current status, or None."""
    if change not in DECIDED_CHANGES:
        return f"Unknown change {change!r}; choose one of: {', '.join(DECIDED_CHANGES)}."
    sources, _ = DECIDED_CHANGES[change]
    if endpoint.status not in sources:
        return f"A {endpoint.get_status_display().lower()} endpoint cannot {change}."
    return None


@transaction.atomic
def endpoint_apply(
    *, actor, endpoint: ModelEndpoint, change: str, fields: Mapping[str, Any] | None, reason: str
) -> ModelEndpoint:
    """Carry out a decided change (approve, reinstate, retire, or edit governed fields).

    Only the approvals workflow calls this, after the Accountable approved the request."""
    endpoint = ModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    problem = change_problem(endpoint, change)
    if problem:
        raise InvalidTransition(problem)
    if change == "change":
        cleaned = _clean(dict(fields or {}), current=endpoint)
        changed = [k for k in EDITABLE_FIELDS if cleaned[k] != getattr(endpoint, k)]
        for name in changed:
            setattr(endpoint, name, cleaned[name])
        if changed:
            save_with_history(
                endpoint, actor=actor, reason=reason[:100], update_fields=[*changed, "updated_at"]
            )
            audit.record(
                "registry.endpoint.change",
                actor=actor,
                obj=endpoint,
                data={"fields": sorted(changed), "reason": reason},
            )
        return endpoint
    _, target = DECIDED_CHANGES[change]
    _set_status(
        endpoint, actor=actor, status=target, reason=reason, verb=f"registry.endpoint.{change}"
    )
    return endpoint


@transaction.atomic
def endpoint_suspend(*, actor, endpoint: ModelEndpoint, reason: str) -> ModelEndpoint:
    """The emergency stop: nothing calls the endpoint from now on. Operators and compliance
    apply it at once with a reason; the owners of every charter and route using it are told."""
    permissions.require(actor, permissions.OPERATE)
    if not (reason or "").strip():
        raise ValidationFailed(
            "A reason is required to suspend.", errors={"reason": ["This field is required."]}
        )
    endpoint = ModelEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    if endpoint.status != EndpointStatus.APPROVED:
        raise InvalidTransition(
            f"Only an approved endpoint can be suspended; this one is {endpoint.get_status_display().lower()}."
        )
    _set_status(
        endpoint,
        actor=actor,
        status=EndpointStatus.SUSPENDED,
        reason=reason.strip(),
        verb="registry.endpoint.suspend",
    )
    return endpoint


def status_change_notice(endpoint: ModelEndpoint, previous: str) -> tuple[str, str, str] | None:
    """(verb, title, dedupe prefix) for telling the users of an endpoint that its status
    changed; None when nothing changed for them (no change, or a first approval)."""
    if endpoint.status == previous or (
        endpoint.status == EndpointStatus.APPROVED and previous == EndpointStatus.PROPOSED
    ):
        return None
    return (
        f"registry.endpoint.{endpoint.status}",
        f"Model endpoint {endpoint.name} is now {endpoint.get_status_display().lower()}",
        f"endpoint:{endpoint.pk}:{endpoint.status}:{endpoint.updated_at.isoformat()}",
    )
