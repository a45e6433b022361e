"""Enumerations of the charter domain."""

from django.db import models

from apps.core.choices import RiskTier  # noqa: F401  (charters name it; the registry needs it too)


class CharterStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    SUBMITTED = "submitted", "Submitted"
    APPROVED = "approved", "Approved"
    PILOT = "pilot", "Pilot"
    PRODUCTION = "production", "Production"
    PAUSED = "paused", "Paused"
    RETIRED = "retired", "Retired"


class DataSensitivity(models.TextChoices):
    PUBLIC = "public", "Public"
    INTERNAL = "internal", "Internal"
    CONFIDENTIAL = "confidential", "Confidential"
    RESTRICTED = "restricted", "Restricted (personal or regulated data)"


class DependencyKind(models.TextChoices):
    SYSTEM = "system", "System"
    DATA_SOURCE = "data_source", "Data source"
    TEAM = "team", "Team"
    VENDOR = "vendor", "Vendor"
    MODEL = "model", "Model"


class Criticality(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


class MetricLayer(models.TextChoices):
    BUSINESS_OUTCOME = "business_outcome", "Business outcome"
    WORKFLOW_EFFICIENCY = "workflow_efficiency", "Workflow efficiency"
    OUTPUT_QUALITY = "output_quality", "Output quality"
    PLATFORM_HEALTH = "platform_health", "Platform health"


class MetricRole(models.TextChoices):
    PRIMARY = "primary", "Primary"
    SUPPORTING = "supporting", "Supporting"


class MetricDirection(models.TextChoices):
    INCREASE = "increase", "Higher is better"
    DECREASE = "decrease", "Lower is better"
