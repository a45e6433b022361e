from django.apps import AppConfig


class RegistryConfig(AppConfig):
    """The register of approved model endpoints and vendors, with their data boundaries."""

    name = "apps.registry"
    label = "registry"
    verbose_name = "Model and vendor registry"
