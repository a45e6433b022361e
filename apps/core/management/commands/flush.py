"""`manage.py flush`, allowed past the TRUNCATE guards on the append-only tables.

On PostgreSQL the audit log, approval decisions, label moves and submitted prompt versions
refuse TRUNCATE (migration core 0003) unless the session sets `aifactory.allow_truncate`.
Flush (and the test runner, which flushes between `transaction=True` tests) is the one
sanctioned way to empty every table, so it sets it for its own statements. Signed checkpoints
still name a log emptied this way.
"""

from django.core.management.commands.flush import Command as DjangoFlush
from django.db import DEFAULT_DB_ALIAS, connections


class Command(DjangoFlush):
    def handle(self, **options):
        connection = connections[options.get("database", DEFAULT_DB_ALIAS)]
        if connection.vendor != "postgresql":
            return super().handle(**options)
        with connection.cursor() as cursor:
            cursor.execute("SET aifactory.allow_truncate = 'on'")
        try:
            return super().handle(**options)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("RESET aifactory.allow_truncate")
