from django.apps import AppConfig


class WorkspaceConfig(AppConfig):
    """The top of the app order: the demo workspace, `make run`'s launcher and /metrics,
    which read across every app below."""

    name = "apps.workspace"
    label = "workspace"
