"""Sign-in forms for the site and the admin, with the brute-force limit applied."""

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from apps.core import ratelimit


class _Limited:
    """Refuses sign-ins from an address or on a user name that used up its failures."""

    def clean(self):
        idents = (
            ratelimit.client_address(self.request),
            f"user:{self.data.get('username', '')}",
        )
        try:
            ratelimit.SIGN_IN.check(*idents)
        except ratelimit.TooManyAttempts as exc:
            minutes = max(1, round(exc.wait / 60))
            raise forms.ValidationError(
                f"Too many failed sign-in attempts. Try again in {minutes} minute(s).",
                code="throttled",
            ) from None
        try:
            return super().clean()
        except forms.ValidationError as exc:
            if exc.code == "invalid_login":
                ratelimit.SIGN_IN.failed(*idents)
            raise


class SignInForm(_Limited, AuthenticationForm):
    pass


class AdminSignInForm(_Limited, AdminAuthenticationForm):
    pass
