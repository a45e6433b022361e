from django.apps import AppConfig


class ScorecardsConfig(AppConfig):
    """Telemetry ingest, layered scorecards per charter and the AI pulse portfolio."""

    name = "apps.scorecards"
    label = "scorecards"

    def ready(self) -> None:
        from apps.evaluations.signals import run_finalized

        from .drift import run_finalized_received

        run_finalized.connect(run_finalized_received, dispatch_uid="scorecards.drift_evaluate")
