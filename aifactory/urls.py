"""Root URLs: web pages, admin, API v1 with its schema, health."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from django.views.generic import RedirectView
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.core import views as core_views
from apps.core.forms import AdminSignInForm, SignInForm
from apps.workspace import metrics as workspace_metrics

admin.site.site_header = "AI Factory — compliance"
admin.site.site_title = "AI Factory admin"
admin.site.index_title = "Governance"
admin.site.login_form = AdminSignInForm

# The prompt API first: resolve is the hottest route and Django tries patterns in order.
api_v1 = [
    path("", include("apps.prompts.api.urls")),
    path("", include("apps.gateway.api.urls")),
    path("", include("apps.core.api.urls")),
    path("", include("apps.charters.api.urls")),
    path("", include("apps.evaluations.api.urls")),
    path("", include("apps.approvals.api.urls")),
    path("", include("apps.scorecards.api.urls")),
    path("", include("apps.registry.api.urls")),
]

urlpatterns = [
    path("api/v1/", include((api_v1, "api"), namespace="api")),
    path("", RedirectView.as_view(pattern_name="charters:list", permanent=False), name="home"),
    path("healthz", core_views.healthz, name="healthz"),
    path("metrics", workspace_metrics.metrics, name="metrics"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(authentication_form=SignInForm),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("inbox/", core_views.inbox, name="inbox"),
    path("inbox/read/", core_views.inbox_mark_read, name="inbox-read"),
    path("charters/", include("apps.charters.urls")),
    path("prompts/", include("apps.prompts.urls")),
    path("evaluations/", include("apps.evaluations.urls")),
    path("approvals/", include("apps.approvals.urls")),
    path("scorecards/", include("apps.scorecards.urls")),
    path("registry/", include("apps.registry.urls")),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
]

# Unmatched /api/ URLs answer in the API's error shape, not with the HTML page.
handler404 = core_views.page_not_found
handler500 = core_views.server_error
