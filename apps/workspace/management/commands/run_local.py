"""`manage.py run_local`: the web server and a Celery worker together, until Ctrl-C."""

import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from apps.workspace.demo import banner

STOP_GRACE_SECONDS = 15


class Command(BaseCommand):
    help = "Serve the product on 127.0.0.1:8000 with a Celery worker; Ctrl-C stops both."

    def add_arguments(self, parser):
        parser.add_argument("--addr", default="127.0.0.1:8000", help="host:port for the web server")
        parser.add_argument("--concurrency", type=int, default=2, help="worker processes")

    def handle(self, *args, addr, concurrency, **options):
        python = sys.executable
        manage = str(settings.BASE_DIR / "manage.py")
        children = {
            "worker": subprocess.Popen(
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "aifactory",
                    "worker",
                    "--beat",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    str(concurrency),
                    "--without-gossip",
                    "--without-mingle",
                ],
                cwd=settings.BASE_DIR,
            ),
            "web": subprocess.Popen(
                [python, manage, "runserver", addr, "--noreload"], cwd=settings.BASE_DIR
            ),
        }
        self.stdout.write(banner())
        self.stdout.write(
            "  Debug mode: on (DJANGO_DEBUG=1): errors show tracebacks; for development only.\n"
            if settings.DEBUG
            else "  Debug mode: off (errors show no code); DJANGO_DEBUG=1 make run turns it on.\n"
        )
        self.stdout.write(
            f"  web pid {children['web'].pid}, worker pid {children['worker'].pid}; Ctrl-C stops both.\n"
        )

        stopping = False

        def stop(signum, frame):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        failed = None
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    failed = f"{name} exited with status {child.returncode}"
                    stopping = True
            time.sleep(0.3)

        for child in children.values():
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for child in children.values():
            try:
                child.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        if failed:
            raise CommandError(f"Stopped because the {failed}.")
        self.stdout.write("Stopped the web server and the worker.")
