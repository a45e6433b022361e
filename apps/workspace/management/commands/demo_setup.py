"""`manage.py demo_setup`: load the demo workspace (idempotent)."""

from django.core.management.base import BaseCommand

from apps.workspace.demo import banner, demo_setup


class Command(BaseCommand):
    help = "Create the demo users, charters and an integration API key (safe to run again)."

    def handle(self, *args, **options):
        result = demo_setup()
        self.stdout.write(banner(result))
