"""Credentials for model endpoints: an allow-list the operator declares, one endpoint each.

`AIFACTORY_MODEL_CREDENTIALS` names the environment variables that hold credentials and binds
each to exactly one endpoint slug (`OPENAI_KEY=openai-eu,ONPREM_KEY=onprem-llm`). Nothing else
in the environment is ever read for a model call, and nothing here says whether a variable
exists: messages speak of the allow-list, which the operator wrote, not of the environment.
"""

from __future__ import annotations

import os

from django.conf import settings


def declared() -> dict[str, str]:
    """Credential name → the one endpoint slug it is bound to."""
    return dict(getattr(settings, "MODEL_CREDENTIALS", {}) or {})


def binding_problem(credential: str, endpoint_slug: str) -> str | None:
    """Why `credential` may not be used by `endpoint_slug`, or None when it may."""
    if not credential:
        return None
    if declared().get(credential) != endpoint_slug:
        return (
            f"No credential named {credential!r} is declared for endpoint {endpoint_slug!r}. "
            "The operator binds each credential to one endpoint in AIFACTORY_MODEL_CREDENTIALS."
        )
    return None


def value_for(endpoint) -> str:
    """The secret to send to `endpoint`'s own host, or "" (none set, or not bound to it)."""
    if not endpoint.credential or binding_problem(endpoint.credential, endpoint.slug):
        return ""
    return os.environ.get(endpoint.credential, "")


def parse(spec: str) -> dict[str, str]:
    """`NAME=slug,NAME2=slug2` → {NAME: slug}; a name bound twice is a configuration error."""
    bound: dict[str, str] = {}
    for item in (spec or "").replace("\n", ",").split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, slug = item.partition("=")
        name, slug = name.strip(), slug.strip()
        if not sep or not name or not slug:
            raise ValueError(
                f"AIFACTORY_MODEL_CREDENTIALS: expected NAME=endpoint-slug, got {item!r}"
            )
        if name in bound and bound[name] != slug:
            raise ValueError(f"AIFACTORY_MODEL_CREDENTIALS: {name} is bound to two endpoints")
        bound[name] = slug
    return bound
