"""Is the portal's own receiver up? A C-MOVE sends the images to our receiver (`manage.py receive`), so
when it is down every move fails, and the PACS is not to blame. `receiver_problem()` says so in words
that send the reader to the right place."""
from __future__ import annotations

import socket

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
