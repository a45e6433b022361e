from django.apps import AppConfig
from django.db.models.signals import post_migrate


class PromptsConfig(AppConfig):
    """Versioned prompt assets, policy checks, labels, applications and lineage."""

    name = "apps.prompts"
    label = "prompts"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from apps.core.hotcache import authz_changed

        from .models import Prompt, PromptGroupObjectPermission, PromptUserObjectPermission
        from .services import prompt_saved
        from .starters import ensure_library

        post_migrate.connect(ensure_library, sender=self, dispatch_uid="prompts.ensure_library")
        # A prompt's owner, charter, catalog listing and status decide who may resolve it.
        for signal in (post_save, post_delete):
            for model in (Prompt, PromptUserObjectPermission, PromptGroupObjectPermission):
                signal.connect(
                    authz_changed,
                    sender=model,
                    dispatch_uid=f"prompts.authz.{model.__name__}.{signal}",
                )
            signal.connect(prompt_saved, sender=Prompt, dispatch_uid=f"prompts.meta.{signal}")
