from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The execution gateway: integrations run live prompts through it."""

    name = "apps.gateway"
    label = "gateway"
