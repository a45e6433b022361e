from django.apps import AppConfig


class PromptsConfig(AppConfig):
    """Versioned prompt assets (issue #3 fills this app)."""

    name = "apps.prompts"
    label = "prompts"
