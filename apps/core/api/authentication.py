"""API-key authentication that maps each key to its service user.

The user must be real so that django-guardian checks and simple-history rows
see who acted (a permission-class-only key would leave the request anonymous).
"""

from django.contrib.auth import get_user_model
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apps.core import ratelimit
from apps.core.hotcache import KeyInfo, key_info, once_per
from apps.core.models import ApiKey

LAST_USED_RESOLUTION_SECONDS = 60


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>`; revoked or expired keys are refused, and an address
    that keeps presenting bad keys is refused with 429 until its window ends."""

    keyword = "Api-Key"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        parts = header.split()
        if parts[0] != self.keyword:
            return None
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Malformed Api-Key header.")
        try:
            key = verified_key(parts[1], address=ratelimit.client_address(request))
        except ratelimit.TooManyAttempts as exc:
            raise exceptions.Throttled(wait=exc.wait, detail=str(exc)) from None
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        user = get_user_model().objects.filter(pk=key.user_id, is_active=True).first()
        if user is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        return (user, key)

    def authenticate_header(self, request):
        return self.keyword


def verified_key(
    plain: str,
    *,
    address: str,
    info: KeyInfo | None | bool = False,
    failures: int | None = None,
) -> KeyInfo | None:
    """The usable key matching `plain` (hash checked), or None; marks it used once a minute.

    `address` is the caller's: failures are counted against it, and TooManyAttempts is
    raised once it has used them up. A hot path may pass what it already fetched from the
    cache in one round trip: `info`, the key's facts (None: unknown key), and `failures`,
    the address's count (`ratelimit.API_KEYS.key(address)`).
    """
    if failures is None:
        ratelimit.API_KEYS.check(address)
    else:
        ratelimit.API_KEYS.check_count(failures)
    prefix = plain.partition(".")[0]
    if info is False:
        info = key_info(prefix)
    if (
        info is None
        or not info.usable
        or not ApiKey.objects.key_generator.verify(plain, info.hashed_key)
    ):
        ratelimit.API_KEYS.failed(address)
        return None
    # Written at most once a minute per key and process, not on every request.
    if once_per(("apikey-used", prefix), LAST_USED_RESOLUTION_SECONDS):
        ApiKey.objects.filter(prefix=prefix).update(last_used_at=timezone.now())
    return info


class ApiKeyScheme(OpenApiAuthenticationExtension):
    """Describes the API-key header in the OpenAPI schema."""

    target_class = "apps.core.api.authentication.ApiKeyAuthentication"
    name = "ApiKeyAuth"

    def get_security_definition(self, auto_schema):
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "`Api-Key <key>`; create one with `manage.py create_api_key` or an application's keys endpoint.",
        }
