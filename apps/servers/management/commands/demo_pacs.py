"""manage.py demo_pacs — a small built-in PACS with generated studies, configured as server DEMO.

For a newcomer's first minute: echo, query and retrieve without a hospital PACS. It serves synthetic
data only (no real patients), on loopback, and moves to the portal's receiver.
"""
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from apps.servers.models import DicomServer

DEMO_AE = "DEMO"


class Command(BaseCommand):
    help = "Run the demo Query/Retrieve SCP (synthetic studies) and register it as server DEMO."

    def handle(self, *args, **options):
        storage = settings.DATA_DIR / "demo-pacs"
        if not (storage / "manifest.json").exists():
            manifest = write_dataset(storage, patients=4, studies=2, series=2, instances=5, rows=128, cols=128,
                                     id_prefix="DEMO")
            self.stdout.write(f"Generated {manifest['files']} demo instances in {storage}")
        DicomServer.objects.update_or_create(
            name="DEMO",
            defaults={"ae_title": DEMO_AE, "host": "127.0.0.1", "port": settings.DEMO_PACS_PORT,
                      "description": "Built-in demo PACS (synthetic data, DEMO_PACS=0 turns it off)"},
        )
        destinations = {settings.DICOM_AE_TITLE: ("127.0.0.1", settings.DICOM_PORT)}
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        with DemoPACS(storage, ae_title=DEMO_AE, port=settings.DEMO_PACS_PORT, destinations=destinations) as pacs:
            self.stdout.write(f"Demo PACS {DEMO_AE} on 127.0.0.1:{pacs.port} (server 'DEMO')")
            self.stdout.flush()
            stop.wait()
