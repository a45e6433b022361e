"""The standard groups and the model-level permissions each one holds."""

from django.contrib.auth.models import Group, Permission

BUSINESS_OWNERS = "business owners"
COMPLIANCE = "compliance"
PLATFORM = "platform"
INTEGRATIONS = "integrations"

# Operators and compliance keep the model registry (approval is a request compliance decides).
REGISTRY_STEWARD = [
    "registry.view_modelendpoint",
    "registry.add_modelendpoint",
    "registry.change_modelendpoint",
    "registry.operate_modelendpoint",
    "registry.view_historicalmodelendpoint",
]

# Object-level access (owner, shared with) is granted by services; these are global.
GROUP_PERMISSIONS: dict[str, list[str]] = {
    BUSINESS_OWNERS: ["charters.add_charter"],
    COMPLIANCE: [
        "charters.view_charter",
        "charters.approve_charter",
        "charters.view_metric",
        "charters.view_dependency",
        "charters.view_historicalcharter",
        "charters.view_historicalmetric",
        "charters.view_historicaldependency",
        "prompts.view_historicalprompt",
        "prompts.view_historicalpromptversion",
        "prompts.view_historicalpolicyfinding",
        "prompts.view_historicalpolicyrule",
        "prompts.view_historicallabel",
        "prompts.view_label",
        "prompts.view_labelmove",
        "prompts.view_consumer",
        "prompts.view_prompt",
        "prompts.review_prompt",
        "prompts.waive_finding",
        "prompts.view_promptversion",
        "prompts.view_policyfinding",
        "prompts.view_policyrule",
        "prompts.change_policyrule",
        "prompts.add_policyrule",
        "prompts.view_application",
        "prompts.view_historicalapplication",
        "evaluations.view_dataset",
        "evaluations.view_datasetversion",
        "evaluations.view_case",
        "evaluations.view_modelartifact",
        "evaluations.view_suite",
        "evaluations.view_threshold",
        "evaluations.view_run",
        "evaluations.view_caseresult",
        "evaluations.view_historicaldataset",
        "evaluations.view_historicalmodelartifact",
        "evaluations.view_historicalsuite",
        "evaluations.view_historicalthreshold",
        "approvals.view_raciassignment",
        "approvals.view_historicalraciassignment",
        "approvals.view_approvalrequest",
        "approvals.view_historicalapprovalrequest",
        "approvals.view_decision",
        "core.view_auditevent",
        *REGISTRY_STEWARD,
    ],
    # Operators see and change the beat schedule in the admin.
    PLATFORM: [
        "django_celery_beat.view_periodictask",
        "django_celery_beat.change_periodictask",
        "django_celery_beat.view_intervalschedule",
        "django_celery_beat.add_intervalschedule",
        "django_celery_beat.view_crontabschedule",
        "django_celery_beat.add_crontabschedule",
        *REGISTRY_STEWARD,
    ],
    INTEGRATIONS: ["evaluations.run_suite"],
}


def ensure_groups(**kwargs) -> None:
    """Create the standard groups and give them their permissions (idempotent)."""
    for name, perms in GROUP_PERMISSIONS.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = []
        for dotted in perms:
            app_label, codename = dotted.split(".")
            perm = Permission.objects.filter(
                content_type__app_label=app_label, codename=codename
            ).first()
            if perm is not None:
                wanted.append(perm)
        group.permissions.add(*wanted)


def in_group(user, name: str) -> bool:
    """Whether the user belongs to the named group (cached per user object)."""
    if not user or not user.is_authenticated:
        return False
    cache = getattr(user, "_group_names", None)
    if cache is None:
        cache = set(user.groups.values_list("name", flat=True))
        user._group_names = cache
    return name in cache


def ensure_beat_schedule(**kwargs) -> None:
    """post_migrate: write the default periodic tasks into the beat schedule once.

    Entries that exist are left alone: an operator's change in the admin stays."""
    from django.conf import settings
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, entry in getattr(settings, "AIFACTORY_DEFAULT_BEAT_SCHEDULE", {}).items():
        if PeriodicTask.objects.filter(name=name).exists():
            continue
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=int(entry["schedule"]), period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.create(name=name, task=entry["task"], interval=interval)
