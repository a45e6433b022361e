"""`manage.py create_api_key`: issue an API key for an integration's service user."""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from apps.core.groups import INTEGRATIONS
from apps.core.services import api_key_create


class Command(BaseCommand):
    help = "Create an API key acting as a (service) user; the key is printed once."

    def add_arguments(self, parser):
        parser.add_argument("--user", required=True, help="username the key acts as")
        parser.add_argument("--name", required=True, help="what the key is for, e.g. 'ci pipeline'")
        parser.add_argument(
            "--create-user",
            action="store_true",
            help="create the user in the integrations group if missing",
        )

    @transaction.atomic
    def handle(self, *args, user, name, create_user, **options):
        User = get_user_model()
        account = User.objects.filter(username=user).first()
        if account is None:
            if not create_user:
                raise CommandError(
                    f"No user named {user!r}. Pass --create-user to create a service user."
                )
            account = User(username=user)
            account.set_unusable_password()
            account.save()
            account.groups.add(Group.objects.get(name=INTEGRATIONS))
        if not account.is_active:
            raise CommandError(f"User {user!r} is inactive.")
        if not name.strip():
            raise CommandError("--name must not be empty.")
        key, plain = api_key_create(user=account, name=name.strip())
        self.stdout.write(f"API key for {account.username} ({key.name}), prefix {key.prefix}:")
        self.stdout.write(plain)
        self.stderr.write("Store it now: it is kept hashed and cannot be shown again.")
