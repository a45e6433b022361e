"""Who may do what with the registry: everyone signed in reads it; operators (platform) and
compliance propose, edit and suspend; approval, reinstatement, retirement and edits of where
data goes are decided by the Accountable for approving model endpoints (compliance)."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied

VIEW = "view"
PROPOSE = "propose"
OPERATE = "operate"

ADD_PERM = "registry.add_modelendpoint"
CHANGE_PERM = "registry.change_modelendpoint"
OPERATE_PERM = "registry.operate_modelendpoint"


def can(user, action: str) -> bool:
    """Whether `user` may `action` on the registry (it is one library, not per object)."""
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if action == VIEW:
        return True
    if action == PROPOSE:
        return user.has_perm(ADD_PERM)
    if action == OPERATE:
        return user.has_perm(OPERATE_PERM)
    raise ValueError(f"unknown registry action {action!r}")


def require(user, action: str) -> None:
    if not can(user, action):
        raise PermissionDenied("You may not change the model registry.")
