from django.apps import AppConfig


class ChartersConfig(AppConfig):
    """Outcome charters: why an AI initiative exists and how it is measured."""

    name = "apps.charters"
    label = "charters"
