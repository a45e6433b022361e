from django.apps import AppConfig


class ChartersConfig(AppConfig):
    """Outcome charters: why an AI initiative exists and how it is measured."""

    name = "apps.charters"
    label = "charters"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.core.hotcache import authz_changed
        from apps.registry.signals import endpoint_status_changed

        from .models import Charter, CharterGroupObjectPermission, CharterUserObjectPermission
        from .services import endpoint_status_notify

        endpoint_status_changed.connect(
            endpoint_status_notify, dispatch_uid="charters.endpoint_status_notify"
        )

        # Who sees a charter (and its prompts) depends on these rows.
        for signal in (post_save, post_delete):
            for model in (Charter, CharterUserObjectPermission, CharterGroupObjectPermission):
                signal.connect(
                    authz_changed,
                    sender=model,
                    dispatch_uid=f"charters.authz.{model.__name__}.{signal}",
                )
