"""Enumerations of the model and vendor registry."""

from django.db import models


class ProviderKind(models.TextChoices):
    OPENAI_COMPATIBLE = "openai", "OpenAI-compatible HTTP"


class EndpointStatus(models.TextChoices):
    PROPOSED = "proposed", "Proposed"
    APPROVED = "approved", "Approved"
    SUSPENDED = "suspended", "Suspended"
    RETIRED = "retired", "Retired"


class DataLocation(models.TextChoices):
    ON_PREMISES = "on_premises", "On premises"
    VENDOR_REGION = "vendor_region", "Vendor, in a named region"
    VENDOR_GLOBAL = "vendor_global", "Vendor, any region"


class TrainingUse(models.TextChoices):
    NO = "no", "Never trains on our data"
    OPT_OUT = "opt_out", "Trains unless opted out (opted out)"
    YES = "yes", "May train on our data"
    UNKNOWN = "unknown", "Unknown"


# Status changes that need a decision through an approval request. Suspension is the
# emergency stop: operators and compliance apply it at once, with a reason.
# name: (the statuses it starts from, the status it leaves). "change" applies edits of the
# fields that decide where data goes (GOVERNED_FIELDS) to an endpoint past proposal.
DECIDED_CHANGES: dict[str, tuple[tuple[str, ...], str | None]] = {
    "approve": ((EndpointStatus.PROPOSED,), EndpointStatus.APPROVED),
    "reinstate": ((EndpointStatus.SUSPENDED,), EndpointStatus.APPROVED),
    "retire": ((EndpointStatus.APPROVED, EndpointStatus.SUSPENDED), EndpointStatus.RETIRED),
    "change": ((EndpointStatus.APPROVED, EndpointStatus.SUSPENDED), None),
}

# Fields whose change on an endpoint past proposal is itself decided (they say where data
# goes, with which credential, for which risk). The others (name, prices, timeouts) are not.
GOVERNED_FIELDS = (
    "base_url",
    "model_names",
    "vendor",
    "data_location",
    "region",
    "retention_days",
    "training_use",
    "terms",
    "credential",
    "allow_private",
    "proxy",
    "risk_tiers",
)
