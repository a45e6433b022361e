from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    """Shared pieces: errors, groups, API keys, notifications, health."""

    name = "apps.core"
    label = "core"
    verbose_name = "Platform"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group
        from django.db.models.signals import m2m_changed, post_delete, post_save
        from guardian.models import GroupObjectPermission, UserObjectPermission

        from . import hotcache
        from .groups import ensure_beat_schedule, ensure_groups
        from .models import ApiKey

        post_migrate.connect(ensure_groups, dispatch_uid="core.ensure_groups")
        post_migrate.connect(ensure_beat_schedule, dispatch_uid="core.ensure_beat_schedule")
        from simple_history.signals import post_create_historical_record

        from .audit import history_recorded

        post_create_historical_record.connect(history_recorded, dispatch_uid="core.audit.history")
        from celery.signals import task_postrun, task_prerun

        from .middleware import task_finished, task_started

        # A task's audit events carry its task id as their correlation id.
        task_prerun.connect(task_started, dispatch_uid="core.correlation.task_started")
        task_postrun.connect(task_finished, dispatch_uid="core.correlation.task_finished")
        User = get_user_model()
        for signal in (post_save, post_delete):
            signal.connect(
                hotcache.key_changed, sender=ApiKey, dispatch_uid=f"core.key_changed.{signal}"
            )
            signal.connect(
                hotcache.user_changed, sender=User, dispatch_uid=f"core.user_changed.{signal}"
            )
            for model in (Group, UserObjectPermission, GroupObjectPermission):
                signal.connect(
                    hotcache.authz_changed,
                    sender=model,
                    dispatch_uid=f"core.authz.{model.__name__}.{signal}",
                )
        for through in (
            User.groups.through,
            User.user_permissions.through,
            Group.permissions.through,
        ):
            m2m_changed.connect(
                hotcache.authz_changed,
                sender=through,
                dispatch_uid=f"core.authz.{through.__name__}",
            )
