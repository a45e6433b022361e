"""Enumerations of the approvals app."""

from django.db import models


class Activity(models.TextChoices):
    APPROVE_CHARTER = "approve_charter", "Approve charter"
    APPROVE_PRODUCTION_PROMPT = "approve_production_prompt", "Approve production prompt"
    OWN_EVALUATION_THRESHOLDS = "own_evaluation_thresholds", "Own evaluation thresholds"
    CHANGE_RETRIEVAL_SOURCES = "change_retrieval_sources", "Change retrieval sources"
    RESPOND_TO_DRIFT = "respond_to_drift", "Respond to drift"
    SIGN_OFF_HIGH_RISK = "sign_off_high_risk", "Sign off high-risk workflow"
    RETIRE_ASSET = "retire_asset", "Retire asset"
    APPROVE_MODEL_ENDPOINT = "approve_model_endpoint", "Approve model endpoint"


class Role(models.TextChoices):
    RESPONSIBLE = "R", "Responsible"
    ACCOUNTABLE = "A", "Accountable"
    CONSULTED = "C", "Consulted"
    INFORMED = "I", "Informed"


class RequestKind(models.TextChoices):
    PROMOTION = "promotion", "Promotion to a protected label"
    CHARTER_TRANSITION = "charter_transition", "Charter status change"
    THRESHOLD_CHANGE = "threshold_change", "Evaluation threshold change"
    RETIREMENT = "retirement", "Retirement of an asset"
    ENDPOINT = "endpoint", "Model endpoint decision"


class RequestStatus(models.TextChoices):
    OPEN = "open", "Waiting for decisions"
    EXECUTED = "executed", "Approved and executed"
    REJECTED = "rejected", "Rejected"
    CHANGES_REQUESTED = "changes_requested", "Changes requested"
    EXPIRED = "expired", "Expired"
    WITHDRAWN = "withdrawn", "Withdrawn"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"
    REQUEST_CHANGES = "request_changes", "Request changes"
    COMMENT = "comment", "Comment"


# The activity whose Accountable decides each kind of request.
DECIDING_ACTIVITY = {
    RequestKind.PROMOTION: Activity.APPROVE_PRODUCTION_PROMPT,
    RequestKind.CHARTER_TRANSITION: Activity.APPROVE_CHARTER,
    RequestKind.THRESHOLD_CHANGE: Activity.OWN_EVALUATION_THRESHOLDS,
    RequestKind.RETIREMENT: Activity.RETIRE_ASSET,
    RequestKind.ENDPOINT: Activity.APPROVE_MODEL_ENDPOINT,
}
HIGH_RISK = ("high", "critical")
