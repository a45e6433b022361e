from django.apps import AppConfig


class GatewayConfig(AppConfig):
    """The execution gateway: integrations run live prompts through it."""

    name = "apps.gateway"
    label = "gateway"

    def ready(self) -> None:
        from apps.registry.signals import endpoint_status_changed

        from .services import endpoint_status_notify

        endpoint_status_changed.connect(
            endpoint_status_notify, dispatch_uid="gateway.endpoint_status_notify"
        )
