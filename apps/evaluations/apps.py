from django.apps import AppConfig


class EvaluationsConfig(AppConfig):
    """Datasets, scorers, suites and runs (issue #4 fills this app)."""

    name = "apps.evaluations"
    label = "evaluations"
