"""Small helpers every evaluations service uses."""

from __future__ import annotations

from django.utils.text import slugify

from apps.core.history import save_with_history  # noqa: F401  (the services import it here)

# Slugs that would collide with the pages' own paths (/evaluations/datasets/new/ …).
RESERVED_SLUGS = {"new", "edit", "upload", "export"}


def unique_slug(model, name: str, *, max_length: int = 80) -> str:
    """A slug from `name` that no row of `model` uses yet (and that is not reserved)."""
    base = (slugify(name) or model._meta.model_name)[: max_length - 6]
    if base in RESERVED_SLUGS:
        base = f"{base}-{model._meta.model_name}"
    slug, n = base, 2
    while model.objects.filter(slug=slug).exists():
        slug, n = f"{base}-{n}", n + 1
    return slug
