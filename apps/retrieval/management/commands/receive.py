"""manage.py receive — the portal's Storage SCP: what a PACS sends for our C-MOVEs lands in staging.

Each instance is written as the bytes that arrived into STAGING_DIR/<move originator AE>/<message id>/,
so the retrieval item that issued the move finds exactly its own instances (apps/dicom/staging.py); what
is refused, and why, is apps/retrieval/receiving.py's ReceiverPolicy.
Runs until SIGTERM/SIGINT, then stops accepting and lets running associations finish.

The Storage SCP is the socket-level one of apps/dicom/wire/storage_scp.py.

`--processes` (default: the RECEIVER_PROCESSES setting): the receiver serves its port from that many
processes. One Python process runs one association at a time on the interpreter: series moved in parallel
on two associations took as long as one. This process then only binds the port and supervises (a child
that dies is restarted); the children accept from the listening socket it hands down, which the kernel
gives to the process that has waited longest, and each takes its share of RECEIVER_MAX_ASSOCIATIONS (the
shares add up to it).
A child dies with this process, SIGKILL included. One process serves when the unsolicited quota is on
(its accounting is one process's).
"""
import argparse
import logging
import os
import select
import signal
import socket
import sys
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand

from apps.dicom.service import stop_on_signals
from apps.dicom.staging import AnsweredWrites, MoveStaging
from apps.dicom.supervisor import Supervisor
from apps.dicom.wire.received import ReceiverLimits, Throttle
from apps.dicom.wire.storage_scp import LeanStorageSCP, close_listener, listening_socket
from apps.notify import restarts
from apps.retrieval.receiver_check import publish_state
from apps.retrieval.receiving import CUT_OFF_FOLDER, PeerGuard, ReceiverPolicy, staging_writer
from apps.servers.models import local_ae

log = logging.getLogger("apps.retrieval.receive")
SWEEP_SECONDS = 3600.0  # how often kept unsolicited instances past their keep time are removed
POLL_SECONDS = 0.2  # how often the supervising process looks after its children
STATE_SECONDS = 1.0  # how often each serving process publishes its state (slots in use) for /healthz
READY_SECONDS = 60.0  # the longest the supervising process waits for its children to accept


def process_count(wanted: int | None = None) -> int:
    """How many processes serve the port: at most one per association allowed."""
    if settings.RECEIVER_KEEP_UNSOLICITED_MB > 0:
        return 1
    return max(1, min(wanted or settings.RECEIVER_PROCESSES, settings.RECEIVER_MAX_ASSOCIATIONS))


def _say_ready(fd: int) -> None:
    try:
        os.write(fd, b".")
    except OSError:  # the parent gave up waiting (READY_SECONDS)
        pass
    os.close(fd)


class Command(BaseCommand):
    help = "Run the Storage SCP that receives C-MOVE results (AE DICOM_AE_TITLE on DICOM_PORT)."

    def add_arguments(self, parser):
        parser.add_argument("--port", type=int, default=None, help="override DICOM_PORT")
        parser.add_argument("--processes", type=int, default=None,
                            help="processes serving the port (default: the RECEIVER_PROCESSES setting)")
        # How the supervising process starts its children: the socket they share, and each one's share.
        parser.add_argument("--listen-fd", type=int, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--max-associations", type=int, default=None, help=argparse.SUPPRESS)
        parser.add_argument("--ready-fd", type=int, default=None, help=argparse.SUPPRESS)

    def handle(self, *args, port=None, processes=None, listen_fd=None, max_associations=None,
               ready_fd=None, **options):
        local = local_ae()
        if port is not None:
            local = type(local)(ae_title=local.ae_title, host=local.host, port=port)
        stop = stop_on_signals()
        count = process_count(processes)
        if listen_fd is None and count > 1:
            self.supervise(local, count, stop)
        else:
            self.serve(local, stop, listen_fd, max_associations, ready_fd)

    def serve(self, local, stop: threading.Event, listen_fd: int | None, max_associations: int | None,
              ready_fd: int | None = None):
        staging = MoveStaging(settings.STAGING_DIR)
        policy = ReceiverPolicy(local.ae_title)
        guard = PeerGuard(staging.root / CUT_OFF_FOLDER, query=policy._query)
        writes = AnsweredWrites()
        throttle = Throttle()  # one line a minute per peer address, for the SCP's refusals and the writer's
        writer = staging_writer(staging, policy, writes, guard, throttle)
        total = settings.RECEIVER_MAX_ASSOCIATIONS
        share = max_associations or total
        limits = ReceiverLimits(max_associations=share, idle_timeout=settings.RECEIVER_IDLE_TIMEOUT,
                                pdu_timeout=settings.RECEIVER_PDU_TIMEOUT, quiet_timeout=settings.RECEIVER_QUIET_TIMEOUT,
                                per_address=max(1, round(settings.RECEIVER_PEER_ASSOCIATIONS * share / total)))
        shared = {} if listen_fd is None else {"listener": socket.socket(fileno=listen_fd)}
        with LeanStorageSCP(local, writer, bind_host=local.host, accepts_calling_ae=policy.calling_ae_allowed,
                            accepts_address=guard.accepts, trusted_address=policy.trusted_address,
                            throttle=throttle, limits=limits, **shared) as scp:
            if ready_fd is not None:
                _say_ready(ready_fd)
            if listen_fd is None:
                log.info("receiver %s listening on %s:%s, staging in %s", local.ae_title, local.host,
                         scp.port, settings.STAGING_DIR)
                self.stdout.write(f"Receiver {local.ae_title} on {local.host}:{scp.port} (Ctrl-C to stop)")
                self.stdout.flush()
            swept = time.monotonic()
            with publish_state(scp.admission.state) as publish:
                full = scp.admission.refused_full
                while not stop.is_set():
                    if full.wait(STATE_SECONDS):  # refused for want of a slot: said at once, then at most 10 times a second
                        full.clear()
                        stop.wait(0.1)
                    publish()
                    if time.monotonic() - swept >= SWEEP_SECONDS:
                        writer.quota.sweep()
                        swept = time.monotonic()
        writes.close()  # the associations, stopped above, wrote what they answered for
        log.info("receiver stopped")

    def supervise(self, local, count: int, stop: threading.Event):
        listener = listening_socket(local.host, local.port)
        port, fd = listener.getsockname()[1], listener.fileno()
        listener.set_inheritable(True)
        ready_read, ready_write = os.pipe()  # each child writes a byte once it accepts
        command = [sys.executable, str(settings.BASE_DIR / "manage.py"), "receive",
                   "--port", str(port), "--listen-fd", str(fd)]
        # The shares add up to the limit exactly (7 on 2 processes: 4 and 3). A child is killed with us,
        # not asked to stop: a receiver killed mid-move must not finish it.
        total = settings.RECEIVER_MAX_ASSOCIATIONS
        commands = {f"receiver-{n + 1}": command + ["--max-associations", str(total // count + (n < total % count))]
                    for n in range(count)}
        supervisor = Supervisor({name: c + ["--ready-fd", str(ready_write)] for name, c in commands.items()},
                                cwd=settings.BASE_DIR, say=log.info, pass_fds=(fd, ready_write),
                                death_signal=signal.SIGKILL, on_death=restarts.on_death)
        supervisor.start_all()
        os.close(ready_write)
        ready, deadline = 0, time.monotonic() + READY_SECONDS  # "listening" is said once every child is
        while ready < count and time.monotonic() < deadline and not stop.is_set():
            if select.select([ready_read], [], [], POLL_SECONDS)[0]:
                ready += len(os.read(ready_read, count))
            supervisor.poll()
        os.close(ready_read)
        # Nobody waits for a restarted child's byte: it gets no pipe, whose number may name something else of
        # ours by then.
        supervisor.pass_fds = (fd,)
        for child in supervisor.children:
            child.command = commands[child.name]
        log.info("receiver %s (%d processes) listening on %s:%s, staging in %s", local.ae_title, count,
                 local.host, port, settings.STAGING_DIR)
        self.stdout.write(f"Receiver {local.ae_title} on {local.host}:{port} ({count} processes, Ctrl-C to stop)")
        self.stdout.flush()
        try:
            while not stop.wait(POLL_SECONDS):
                supervisor.poll()
        finally:
            close_listener(listener)  # every child's accept() ends: nothing new is taken
            supervisor.stop_all()  # each child finishes its associations and writes what it answered for
        log.info("receiver stopped")
