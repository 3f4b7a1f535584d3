"""manage.py demo_pacs — a small built-in PACS with generated studies, configured as server DEMO.

For a newcomer's first minute: echo, query and retrieve without a hospital PACS. It serves synthetic
data only (no real patients), on loopback, and moves to the portal's receiver.
"""
import json
import shutil

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dicom.demo.qrscp import DemoPACS
from apps.dicom.demo.synthetic import write_dataset
from apps.dicom.service import stop_on_signals
from apps.servers.models import DicomServer

DEMO_AE = "DEMO"
# What the README's first minute retrieves: 4 patients (DEMO00001..DEMO00004), each study dated one day
# after the previous from 2024-01-02, so `DEMO00001,2024-01-01..2025-12-31,,DEMO` finds both of DEMO00001's.
DEMO_DATASET = dict(patients=4, studies=2, series=2, instances=5, rows=128, cols=128, id_prefix="DEMO",
                    first_date="2024-01-02")


class Command(BaseCommand):
    help = "Run the demo Query/Retrieve SCP (synthetic studies) and register it as server DEMO."

    def handle(self, *args, **options):
        storage = settings.DATA_DIR / "demo-pacs"
        recipe = storage / "dataset.json"
        if not recipe.exists() or json.loads(recipe.read_text()) != DEMO_DATASET:
            shutil.rmtree(storage, ignore_errors=True)  # generated data only: made again from the recipe
            manifest = write_dataset(storage, **DEMO_DATASET)
            recipe.write_text(json.dumps(DEMO_DATASET))
            self.stdout.write(f"Generated {manifest['files']} demo instances in {storage}")
        DicomServer.objects.update_or_create(
            name="DEMO",
            defaults={"ae_title": DEMO_AE, "host": "127.0.0.1", "port": settings.DEMO_PACS_PORT,
                      "description": "Built-in demo PACS (synthetic data, DEMO_PACS=0 turns it off)"},
        )
        destinations = {settings.DICOM_AE_TITLE: ("127.0.0.1", settings.DICOM_PORT)}
        stop = stop_on_signals()
        with DemoPACS(storage, ae_title=DEMO_AE, port=settings.DEMO_PACS_PORT, destinations=destinations) as pacs:
            self.stdout.write(f"Demo PACS {DEMO_AE} on 127.0.0.1:{pacs.port} (server 'DEMO')")
            self.stdout.flush()
            stop.wait()
