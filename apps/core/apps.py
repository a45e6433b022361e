from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    """Shared pieces: errors, groups, API keys, notifications, health."""

    name = "apps.core"
    label = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from .groups import ensure_groups

        post_migrate.connect(ensure_groups, dispatch_uid="core.ensure_groups")
