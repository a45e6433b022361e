from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    """RACI, approval requests and release gates (issue #5 fills this app)."""

    name = "apps.approvals"
    label = "approvals"
