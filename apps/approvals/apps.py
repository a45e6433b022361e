from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApprovalsConfig(AppConfig):
    """RACI, approval requests and release gates."""

    name = "apps.approvals"
    label = "approvals"

    def ready(self) -> None:
        from .raci import ensure_global_defaults

        post_migrate.connect(
            ensure_global_defaults, sender=self, dispatch_uid="approvals.raci_defaults"
        )
