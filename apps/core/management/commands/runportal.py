"""manage.py runportal — run the whole portal on one machine until Ctrl-C (what `make run` starts).

Processes: web (gunicorn), the django-q2 worker cluster, the DICOM receiver, the inbox watcher and,
unless DEMO_PACS=0, the demo PACS, each in its own process group under apps/dicom/supervisor.py: one that dies is restarted
with backoff while the others go on, /healthz names it while it is down, and Ctrl-C or SIGTERM ends
every process started, their children included. Scale-out runs the same pieces as separate services
instead (README, "Scaling out").
"""
import os
import signal
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.core.health import status_path
from apps.dicom.supervisor import STOP_SECONDS, Supervisor
from apps.notify import restarts


def portal_processes() -> dict[str, list[str]]:
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    web_host = os.environ.get("WEB_HOST", "127.0.0.1")
    procs = {
        "web": [sys.executable, "-m", "gunicorn", "pacsportal.wsgi:application", "--bind",
                f"{web_host}:{settings.PORT}", "--workers", os.environ.get("WEB_WORKERS", "2"),
                "--threads", "4", "--timeout", "120", "--access-logfile", "-",
                # requests in flight at stop get this long, inside the supervisor's own bound
                "--graceful-timeout", str(int(STOP_SECONDS) - 5),
                # the path without its query string: queries such as ?PatientID=… stay out of the log
                "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'],
        "workers": manage + ["qcluster"],
        "receiver": manage + ["receive"],
        "inbox-watcher": manage + ["watch_inboxes"],
    }
    if settings.DEMO_PACS:
        procs["demo-pacs"] = manage + ["demo_pacs"]
    return procs


class Command(BaseCommand):
    help = "Run web + workers + receiver + inbox watcher (+ demo PACS) together until Ctrl-C."

    def handle(self, *args, **options):
        stopping = False

        def stop(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        supervisor = Supervisor(portal_processes(), cwd=settings.BASE_DIR, status_path=status_path(),
                                say=self.say, on_death=restarts.on_death)
        supervisor.start_all()
        self.stdout.write(self.style.SUCCESS(
            f"PACS Portal: http://127.0.0.1:{settings.PORT}/admin/  API http://127.0.0.1:{settings.PORT}/api/docs/  "
            f"receiver {settings.DICOM_AE_TITLE}@{settings.DICOM_HOST}:{settings.DICOM_PORT}  (Ctrl-C stops)"))
        while not stopping:
            supervisor.poll()
            time.sleep(0.2)
        self.stdout.write("stopping the portal")
        supervisor.stop_all()
        self.stdout.write("PACS Portal stopped.")
        sys.exit(0)

    def say(self, line: str) -> None:
        self.stdout.write(line)
        self.stdout.flush()
