"""Enumerations of the prompt library."""

from django.db import models


class TaskType(models.TextChoices):
    SUMMARIZATION = "summarization", "Summarization"
    CLASSIFICATION = "classification", "Classification"
    ROUTING = "routing", "Routing"
    EXTRACTION = "extraction", "Extraction"
    DRAFTING = "drafting", "Drafting"
    QUESTION_ANSWERING = "question_answering", "Question answering"
    OTHER = "other", "Other"


class PromptStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    DEPRECATED = "deprecated", "Deprecated"
    RETIRED = "retired", "Retired"


class TemplateKind(models.TextChoices):
    CHAT = "chat", "Chat messages"
    TEXT = "text", "Text"


class MessageRole(models.TextChoices):
    SYSTEM = "system", "System"
    USER = "user", "User"
    ASSISTANT = "assistant", "Assistant"


class VersionStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"


class ChangeKind(models.TextChoices):
    MAJOR = "major", "Major"
    MINOR = "minor", "Minor"
    PATCH = "patch", "Patch"


class RuleKind(models.TextChoices):
    PATTERN = "pattern", "Pattern (regular expression)"
    SECRET = "secret", "Secret detector"
    PII = "pii", "Personal data detector"
    STRUCTURAL = "structural", "Structural check"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    BLOCKING = "blocking", "Blocking"


PROTECTED_LABELS = ("production",)
STANDARD_LABELS = ("production", "staging", "development")
