from django.apps import AppConfig
from django.db.models.signals import post_migrate


class ApprovalsConfig(AppConfig):
    """RACI, approval requests and release gates."""

    name = "apps.approvals"
    label = "approvals"

    def ready(self) -> None:
        from apps.charters.services import OWNER_CHANGE_HOOKS, SUBMIT_CHECKS, TRANSITION_HOOKS

        from .raci import ensure_global_defaults, owner_changed, submit_errors
        from .services import charter_transitioned

        if charter_transitioned not in TRANSITION_HOOKS:
            TRANSITION_HOOKS.append(charter_transitioned)
        if submit_errors not in SUBMIT_CHECKS:
            SUBMIT_CHECKS.append(submit_errors)
        if owner_changed not in OWNER_CHANGE_HOOKS:
            OWNER_CHANGE_HOOKS.append(owner_changed)

        post_migrate.connect(
            ensure_global_defaults, sender=self, dispatch_uid="approvals.raci_defaults"
        )
