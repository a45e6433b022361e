from django.urls import path

from .views import PortfolioView, ScorecardView, TelemetryView

urlpatterns = [
    path("telemetry", TelemetryView.as_view(), name="telemetry"),
    path("charters/<slug:slug>/scorecard/", ScorecardView.as_view(), name="charter-scorecard"),
    path("portfolio/", PortfolioView.as_view(), name="portfolio"),
]
