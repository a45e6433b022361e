"""Brute-force limits on credentials: failed API keys and failed sign-ins.

Failures are counted per client address (and, for sign-ins, per user name) in fixed
windows in the cache. Once a counter reaches the limit, every attempt from that address
or on that name is refused until the window ends, the right credential included: an
attacker who keeps guessing learns nothing more. With CACHE_URL (Redis) the counters are
shared by every web process; with the per-process default each process counts alone.
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger("aifactory.security")


class TooManyAttempts(Exception):
    """Refused before checking the credential; `wait` is the seconds until the window ends."""

    def __init__(self, wait: int):
        super().__init__(f"Too many failed attempts; try again in {wait} seconds.")
        self.wait = wait


def client_address(request) -> str:
    """The caller's address: REMOTE_ADDR, or the right-most hop of the header the operator's
    own proxy sets (AIFACTORY_CLIENT_IP_HEADER), which a client cannot forge."""
    meta = request.META
    header = settings.AIFACTORY_CLIENT_IP_HEADER
    if header and meta.get(header):
        return meta[header].split(",")[-1].strip()
    return meta.get("REMOTE_ADDR", "") or "unknown"


@dataclass(frozen=True)
class Limiter:
    """Counts failures of one kind of credential; `ident` is an address or a user name."""

    scope: str

    @staticmethod
    def _window() -> int:
        return settings.AIFACTORY_AUTH_FAILURE_WINDOW_SECONDS

    def key(self, ident: str, now: float | None = None) -> str:
        window = int((now or time.time()) // self._window())
        digest = hashlib.blake2s(ident.lower().encode(), digest_size=12).hexdigest()
        return f"authfail:{self.scope}:{digest}:{window}"

    def check(self, *idents: str, now: float | None = None) -> None:
        """Raise TooManyAttempts if any of `idents` has used up its failures."""
        now = now or time.time()
        counts = cache.get_many([self.key(ident, now) for ident in idents])
        self.check_count(max(counts.values(), default=0), now=now)

    def check_count(self, failures: int, now: float | None = None) -> None:
        """Raise TooManyAttempts if `failures` (read by the caller) reached the limit."""
        if failures >= settings.AIFACTORY_AUTH_FAILURE_LIMIT:
            raise TooManyAttempts(self._wait(now or time.time()))

    def failed(self, *idents: str, now: float | None = None) -> None:
        """Count one failure against each of `idents`."""
        now = now or time.time()
        for ident in idents:
            key = self.key(ident, now)
            cache.add(key, 0, timeout=self._window() + 1)
            try:
                count = cache.incr(key)
            except ValueError:  # expired between add and incr
                cache.set(key, 1, timeout=self._window() + 1)
                count = 1
            if count == settings.AIFACTORY_AUTH_FAILURE_LIMIT:
                logger.warning(
                    "%s: %s reached %d failed attempts; refusing until the window ends",
                    self.scope,
                    ident,
                    count,
                    extra={"event": "auth.locked", "scope": self.scope},
                )

    def _wait(self, now: float) -> int:
        window = self._window()
        return max(1, math.ceil(window - now % window))


API_KEYS = Limiter("api-key")
SIGN_IN = Limiter("sign-in")
