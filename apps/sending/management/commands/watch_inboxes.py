"""manage.py watch_inboxes — the long-running inbox watcher (started by `make run` / runportal).

Ready folders become send jobs on the worker cluster, so stopping or killing this process loses
nothing: on start it finds every folder that arrived meanwhile. SIGTERM or Ctrl-C stops it cleanly."""
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dicom.service import stop_on_signals
from apps.sending.watcher import InboxWatcher


class Command(BaseCommand):
    help = "Watch every enabled inbox and start a send job for each ready folder."

    def add_arguments(self, parser):
        parser.add_argument("--poll", type=float, default=settings.INBOX_POLL_SECONDS,
                            help="seconds between passes (default INBOX_POLL_SECONDS)")
        parser.add_argument("--mode", choices=["auto", "inotify", "polling"], default=settings.INBOX_WATCH_MODE,
                            help="inotify (via watchdog) or polling (network shares); auto falls back to polling")
        parser.add_argument("--once", action="store_true", help="one pass, then exit")

    def handle(self, *args, poll, mode, once, **options):
        watcher = InboxWatcher(mode=mode)
        if once:
            started = watcher.scan_once()
            watcher.stop()
            self.stdout.write(f"{len(started)} runs started")
            return
        stop = stop_on_signals()

        def end_the_watch() -> None:  # not from a signal handler: see stop_on_signals
            stop.wait()
            watcher.wake.set()

        threading.Thread(target=end_the_watch, name="inbox-stop", daemon=True).start()
        self.stdout.write(f"watching inboxes ({watcher.mode}, every {poll:g} s); SIGTERM or Ctrl-C stops")
        watcher.run_forever(poll)
        watcher.stop()
        self.stdout.write("inbox watcher stopped")
