from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    """Telemetry ingest, layered scorecards per charter and the AI pulse portfolio."""

    name = "apps.scorecards"
    label = "scorecards"
