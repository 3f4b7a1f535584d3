"""manage.py runportal — run the whole portal on one machine until Ctrl-C (what `make run` starts).

Processes: web (gunicorn), the django-q2 worker cluster, the DICOM receiver and, unless DEMO_PACS=0,
the demo PACS. If one of them dies the others are stopped too, so a broken install never looks alive.
Scale-out runs the same pieces as separate services instead (README, "Scaling out").
"""
import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management.base import BaseCommand


def portal_processes() -> dict[str, list[str]]:
    manage = [sys.executable, str(settings.BASE_DIR / "manage.py")]
    web_host = os.environ.get("WEB_HOST", "127.0.0.1")
    procs = {
        "web": [sys.executable, "-m", "gunicorn", "pacsportal.wsgi:application", "--bind",
                f"{web_host}:{settings.PORT}", "--workers", os.environ.get("WEB_WORKERS", "2"),
                "--threads", "4", "--timeout", "120", "--access-logfile", "-",
                # the path without its query string: queries such as ?PatientID=… stay out of the log
                "--access-logformat", '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms'],
        "workers": manage + ["qcluster"],
        "receiver": manage + ["receive"],
    }
    if settings.DEMO_PACS:
        procs["demo-pacs"] = manage + ["demo_pacs"]
    return procs


class Command(BaseCommand):
    help = "Run web + workers + receiver (+ demo PACS) together until Ctrl-C."

    def handle(self, *args, **options):
        running: dict[str, subprocess.Popen] = {}
        stopping = False

        def stop_all(*_):
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop_all)
        signal.signal(signal.SIGTERM, stop_all)
        for name, cmd in portal_processes().items():
            running[name] = subprocess.Popen(cmd, cwd=settings.BASE_DIR)
            self.stdout.write(f"started {name} (pid {running[name].pid})")
        self.stdout.write(self.style.SUCCESS(
            f"PACS Portal: http://127.0.0.1:{settings.PORT}/admin/  API http://127.0.0.1:{settings.PORT}/api/docs/  "
            f"receiver {settings.DICOM_AE_TITLE}@{settings.DICOM_HOST}:{settings.DICOM_PORT}  (Ctrl-C stops)"))
        exit_code = 0
        while not stopping:
            for name, proc in running.items():
                if proc.poll() is not None:
                    self.stderr.write(f"{name} exited with code {proc.returncode}; stopping the portal")
                    exit_code, stopping = 1, True
                    break
            time.sleep(0.5)
        for proc in running.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for name, proc in running.items():
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(f"{name} did not stop in time; killing it")
                proc.kill()
        self.stdout.write("PACS Portal stopped.")
        sys.exit(exit_code)
