"""Enumerations shared by more than one app (the lowest layer holds them)."""

from django.db import models


class RiskTier(models.TextChoices):
    LOW = "low", "Low"
    MEDIUM = "medium", "Medium"
    HIGH = "high", "High"
    CRITICAL = "critical", "Critical"


def risk_rank(tier: str) -> int:
    """low 0 < medium 1 < high 2 < critical 3; -1 for an empty or unknown value."""
    return RiskTier.values.index(tier) if tier in RiskTier.values else -1


def stricter_tier(*tiers: str) -> str:
    """The highest of the known tiers given, or "" when none is known."""
    known = [t for t in tiers if risk_rank(t) >= 0]
    return max(known, key=risk_rank) if known else ""
