"""API-key authentication that maps each key to its service user.

The user must be real so that django-guardian checks and simple-history rows
see who acted (a permission-class-only key would leave the request anonymous).
"""

from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import authentication, exceptions

from apps.core.models import ApiKey

LAST_USED_RESOLUTION_SECONDS = 60


class ApiKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Api-Key <key>`; revoked or expired keys are refused."""

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
        prefix = parts[1].partition(".")[0]
        # Usable = not revoked, not expired; the user comes in the same query.
        key = ApiKey.objects.get_usable_keys().select_related("user").filter(prefix=prefix).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        if not key.is_valid(parts[1]) or not key.user.is_active:
            raise exceptions.AuthenticationFailed("Invalid API key.")
        now = timezone.now()
        # Written at most once a minute per key, not on every request.
        if (
            key.last_used_at is None
            or (now - key.last_used_at).total_seconds() > LAST_USED_RESOLUTION_SECONDS
        ):
            ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)
        return (key.user, key)

    def authenticate_header(self, request):
        return self.keyword


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
