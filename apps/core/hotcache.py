"""Caching for the hottest read paths (API-key checks, permission decisions, resolves).

It is on only with a cache shared by every process (CACHE_URL, e.g. Redis), because
invalidation must reach all of them: with per-process memory a change made in one
process would leave stale answers in the others. Permission decisions are keyed by an
"authorization version" that any change of grants, groups, ownership or accounts bumps,
so a removed person loses access at once.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

AUTHZ_VERSION_KEY = "authz:version"


def enabled() -> bool:
    return settings.HOT_CACHE_SECONDS > 0


def ttl() -> int:
    return settings.HOT_CACHE_SECONDS


def authz_version() -> str:
    """The current authorization version (created on first use)."""
    version = cache.get(AUTHZ_VERSION_KEY)
    if version is None:
        version = uuid.uuid4().hex
        cache.add(AUTHZ_VERSION_KEY, version, timeout=None)
        version = cache.get(AUTHZ_VERSION_KEY) or version
    return version


def authz_changed(**kwargs) -> None:
    """Invalidate every cached permission decision (signal receiver)."""
    if enabled():
        cache.set(AUTHZ_VERSION_KEY, uuid.uuid4().hex, timeout=None)


@dataclass(frozen=True)
class KeyInfo:
    """What a request needs to know about an API key, without touching the database."""

    prefix: str
    hashed_key: str
    user_id: int
    user_active: bool
    revoked: bool
    expiry_ts: float | None
    application_id: int | None

    @property
    def usable(self) -> bool:
        expired = self.expiry_ts is not None and self.expiry_ts < timezone.now().timestamp()
        return self.user_active and not self.revoked and not expired


def key_cache_key(prefix: str) -> str:
    return f"apikey:{prefix}"


def key_info(prefix: str, *, cached=None) -> KeyInfo | None:
    """The key's facts, from the cache (or `cached`, already fetched) or the database."""
    from apps.core.models import ApiKey

    if enabled():
        if cached is None:
            cached = cache.get(key_cache_key(prefix))
        if cached is not None:
            return cached or None
    key = ApiKey.objects.select_related("user").filter(prefix=prefix).first()
    info = None
    if key is not None:
        application = (
            getattr(key.user, "application", None) if hasattr(key.user, "application") else None
        )
        info = KeyInfo(
            prefix=prefix,
            hashed_key=key.hashed_key,
            user_id=key.user_id,
            user_active=key.user.is_active,
            revoked=key.revoked,
            expiry_ts=key.expiry_date.timestamp() if key.expiry_date else None,
            application_id=application.pk if application else None,
        )
    if enabled():
        cache.set(key_cache_key(prefix), info or False, ttl())
    return info


def key_changed(sender, instance, **kwargs) -> None:
    """Forget a key's cached facts when it is saved (revoked) or deleted."""
    cache.delete(key_cache_key(instance.prefix))


def user_changed(sender, instance, **kwargs) -> None:
    """A user's activity or rights changed: forget their keys and all decisions."""
    prefixes = list(instance.api_keys.values_list("prefix", flat=True)) if instance.pk else []
    cache.delete_many([key_cache_key(p) for p in prefixes])
    authz_changed()


_gates: dict[object, float] = {}


def once_per(key, seconds: float) -> bool:
    """True at most once per `seconds` for `key` in this process (throttles hot-path writes)."""
    now = time.monotonic()
    if now - _gates.get(key, -seconds) < seconds:
        return False
    _gates[key] = now
    return True


def reset() -> None:
    """Forget this process's write gates (tests start from a clean process state)."""
    _gates.clear()
