"""Is the portal's own receiver up? A C-MOVE sends the images to our receiver (`manage.py receive`), so
when it is down every move fails, and the PACS is not to blame. `receiver_problem()` says so in words
that send the reader to the right place."""
from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from pathlib import Path

from django.conf import settings

from apps.dicom import dimse
from apps.dicom.errors import REJECT_REASONS, AssociationRejected, DicomError
from apps.dicom.peers import LocalAE, RemoteAE
from apps.servers.models import local_ae

START_IT = "start it with `manage.py receive`, or check that `make run` (manage.py runportal) is running"
CALLING_AE_REFUSED = REJECT_REASONS[(1, 3)].split(":")[0]  # the receiver answered; it only refused our title


def receiver_problem(timeout: float = 3.0) -> str | None:
    """None when a C-ECHO to DICOM_AE_TITLE at DICOM_HOST:DICOM_PORT is answered; otherwise what is wrong,
    naming the AE title, host and port."""
    local = local_ae()
    where = f"the portal's receiver {local.ae_title} at {local.host}:{local.port}"
    try:
        with socket.create_connection((local.host, local.port), timeout=timeout):
            pass
    except OSError as exc:
        return f"Cannot reach {where} ({exc.strerror or exc}): {START_IT}."
    receiver = RemoteAE(ae_title=local.ae_title, host=local.host, port=local.port, name="receiver",
                        connect_timeout=timeout, query_timeout=timeout)
    try:
        dimse.echo(receiver, LocalAE(ae_title=local.ae_title))
    except AssociationRejected as exc:
        if CALLING_AE_REFUSED in str(exc):
            return None
        return (f"Another DICOM service answers on {local.host}:{local.port} and refuses the AE title "
                f"{local.ae_title}: it is not the portal's receiver. Check DICOM_AE_TITLE and DICOM_PORT (another "
                f"program may hold the port), and {START_IT}.")
    except DicomError as exc:
        return f"{where} does not answer a C-ECHO ({exc}): {START_IT}."
    return None


STATE_FILES = ".receiver-*.json"  # in STAGING_DIR: one small JSON file per serving receiver process
STATE_FRESH_SECONDS = 10.0  # a state file older than this is of a process that stopped publishing
SATURATED_SECONDS = 60.0  # a receiver that refused an association for want of a slot this recently is saturated


@contextlib.contextmanager
def publish_state(state):
    """For the receiver process: `publish()` writes `state()` (its slots in use, the last refusal for want of
    one) where /healthz and a failing retrieval read it; the file goes when the process stops."""
    folder = Path(settings.STAGING_DIR)
    path = folder / STATE_FILES.replace("*", str(os.getpid()))

    def publish() -> None:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".part")
            tmp.write_text(json.dumps({**state(), "pid": os.getpid(), "written_at": time.time()}))
            os.replace(tmp, path)
        except OSError:
            pass  # an unwritable staging folder is reported by every retrieval that needs it

    publish()
    try:
        yield publish
    finally:
        path.unlink(missing_ok=True)


def receiver_saturation(since: float | None = None) -> str | None:
    """None unless a receiver process is at its association limit, or refused an association for want of a
    slot within the last minute (or since `since`, a time.time()): then what is wrong, in words."""
    now, full, refused = time.time(), 0, 0
    cutoff = now - SATURATED_SECONDS if since is None else since
    for path in Path(settings.STAGING_DIR).glob(STATE_FILES):
        try:
            state = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if now - float(state.get("written_at", 0)) > STATE_FRESH_SECONDS:
            continue
        if state.get("associations", 0) >= state.get("limit", 1):
            full += 1
        if float(state.get("refused_full_at", 0)) >= cutoff:
            refused += 1
    if not full and not refused:
        return None
    local = local_ae()
    return (f"the portal's receiver {local.ae_title} at {local.host}:{local.port} was full (every association slot "
            f"taken: {full} process(es) at the limit now, {refused} refused associations for want of a slot); "
            "check RECEIVER_MAX_ASSOCIATIONS and who holds the receiver's associations (its log names them)")
