"""manage.py receive — the portal's Storage SCP: what a PACS sends for our C-MOVEs lands in staging.

Each instance is written as the bytes that arrived into STAGING_DIR/<move originator AE>/<message id>/,
so the retrieval item that issued the move finds exactly its own instances (apps/dicom/staging.py); what
is refused, and why, is apps/retrieval/receiving.py's ReceiverPolicy.
Runs until SIGTERM/SIGINT, then stops accepting and lets running associations finish.

`--engine` (default: the RECEIVER_ENGINE setting, `lean`) picks the Storage SCP: `lean` is the socket-level
one of apps/dicom/wire/storage_scp.py, about 3x the throughput of `pynetdicom` (bench/retrieve.py); both hand
the same instances to the same writer.
"""
import logging
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dicom.engines import STORAGE_SCPS
from apps.dicom.scp import ReceiverLimits
from apps.dicom.staging import BackgroundWrites, MoveStaging
from apps.retrieval.receiving import ReceiverPolicy, staging_writer
from apps.servers.models import local_ae

log = logging.getLogger("apps.retrieval.receive")
SWEEP_SECONDS = 3600.0  # how often kept unsolicited instances past their keep time are removed


class Command(BaseCommand):
    help = "Run the Storage SCP that receives C-MOVE results (AE DICOM_AE_TITLE on DICOM_PORT)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help="override DICOM_PORT")
        parser.add_argument("--engine", choices=sorted(STORAGE_SCPS), default=None,
                            help="Storage SCP implementation (default: the RECEIVER_ENGINE setting)")

    def handle(self, *args, port=None, engine=None, **options):
        engine = engine or settings.RECEIVER_ENGINE
        local = local_ae()
        if port is not None:
            local = type(local)(ae_title=local.ae_title, host=local.host, port=port)
        staging = MoveStaging(settings.STAGING_DIR)
        policy = ReceiverPolicy(local.ae_title)
        writes = BackgroundWrites()
        writer = staging_writer(staging, policy, writes)
        stop = threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop.set())
        limits = ReceiverLimits(max_associations=settings.RECEIVER_MAX_ASSOCIATIONS,
                                idle_timeout=settings.RECEIVER_IDLE_TIMEOUT, pdu_timeout=settings.RECEIVER_PDU_TIMEOUT)
        with STORAGE_SCPS[engine](local, writer, bind_host=local.host, accepts_calling_ae=policy.calling_ae_allowed,
                                  limits=limits) as scp:
            log.info("receiver %s (%s) listening on %s:%s, staging in %s", local.ae_title, engine, local.host,
                     scp.port, settings.STAGING_DIR)
            self.stdout.write(f"Receiver {local.ae_title} on {local.host}:{scp.port} (Ctrl-C to stop)")
            self.stdout.flush()
            while not stop.wait(SWEEP_SECONDS):
                writer.quota.sweep()
        writes.close()  # what was answered for is on disk before the process ends
        log.info("receiver stopped")
