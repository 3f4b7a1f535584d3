"""DemoPACS: a small Query/Retrieve + Storage SCP (pynetdicom) serving the DICOM files under one folder.

It is the portal's built-in demo server and an in-process peer for tests, so it behaves like a real PACS
where the portal can tell the difference: C-FIND at PATIENT/STUDY/SERIES/IMAGE level (Patient and Study
Root) with single-value, wildcard, range and UID-list matching; C-MOVE to declared destinations only
(0xA801 otherwise) with the requestor's Move Originator AE title/Message ID on every C-STORE; C-GET;
C-STORE written as the bytes that arrived. Files are indexed (headers only) on start and on receipt.

    python -m apps.dicom.demo.qrscp --dir DIR --port 11120 --aet DEMO --dest PACSPORTAL@127.0.0.1:11112
"""
from __future__ import annotations

import argparse
import ipaddress
import logging
import re
import socket
import threading
from collections import defaultdict
from io import BytesIO
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID, ExplicitVRLittleEndian, ImplicitVRLittleEndian
from pynetdicom import AE, build_context, evt
from pynetdicom.sop_class import Verification

from apps.dicom.connect import MODELS, application_entity
from apps.dicom.demo.qrmatch import (
    LEVELS,
    UNIQUE_KEY,
    InvalidIdentifier,
    entity_rows,
    find_response,
    matches,
    read_record,
    requested_values,
    text_value,
)
from apps.dicom.service import Service, stop_on_signals
from apps.dicom.staged import write_atomically
from apps.dicom.staging import safe_uid
from apps.dicom.syntaxes import ALL_STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES

log = logging.getLogger(__name__)

# SOP class -> (service, levels the model allows): the models the portal's SCUs use (connect.MODELS), the
# Study Root one without the PATIENT level.
QR_MODELS = {sop_class: (service, LEVELS if model == "patient" else LEVELS[1:])
             for model in ("patient", "study") for service, sop_class in zip(("find", "move", "get"), MODELS[model])}
PENDING, CANCELED, SUCCESS = 0xFF00, 0xFE00, 0x0000
IDENTIFIER_MISMATCH, CANNOT_UNDERSTAND, OUT_OF_RESOURCES = 0xA900, 0xC000, 0xA700


def require_loopback(host: str) -> str:
    try:
        if ipaddress.ip_address(host).is_loopback:
            return host
    except ValueError:
        pass
    raise ValueError(f"DemoPACS only uses loopback addresses, not {host!r}")


def set_nodelay(event) -> None:
    """Nagle's algorithm costs ~40 ms per DIMSE message on loopback (see pacs-lab README)."""
    event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def storage_contexts(records: list[dict]) -> list:
    """Presentation contexts for sending these files: their own transfer syntaxes, plus both
    uncompressed little-endian ones when a file is uncompressed (pynetdicom converts between those)."""
    syntaxes = defaultdict(list)
    for record in records:
        syntaxes[record["SOPClassUID"]].append(UID(record["TransferSyntaxUID"]))
    contexts = []
    for sop_class, found in sorted(syntaxes.items()):
        plain = [ts for ts in found if not ts.is_compressed]
        if plain:
            contexts.append(build_context(sop_class, list(dict.fromkeys(
                plain + [ExplicitVRLittleEndian, ImplicitVRLittleEndian]))))
        contexts += [build_context(sop_class, ts) for ts in dict.fromkeys(found) if ts.is_compressed]
    return contexts


class DemoPACS(Service):
    def __init__(self, storage_dir, *, ae_title: str = "DEMO", host: str = "127.0.0.1", port: int = 0,
                 destinations: dict[str, tuple[str, int]] | None = None):
        self.storage_dir = Path(storage_dir)
        self.ae_title = ae_title
        self.host = require_loopback(host)
        self.requested_port = port  # 0: any free port; `port` is the one bound
        self._destinations: dict[str, tuple[str, int, str]] = {}
        for name, (dest_host, dest_port) in (destinations or {}).items():
            self.add_destination(name, dest_host, dest_port)
        self._index: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._server = None
        self.ae = self._make_ae()

    def add_destination(self, ae_title: str, host: str, port: int, *, called_ae: str | None = None) -> None:
        """Declare a C-MOVE destination. `called_ae` (default ae_title) is the AE title we call there."""
        self._destinations[ae_title] = (require_loopback(host), int(port), called_ae or ae_title)

    def _make_ae(self) -> AE:
        ae = application_entity(self.ae_title)
        ae.maximum_pdu_size = 0  # unlimited: large PDUs make bulk transfers cheaper
        ae.add_supported_context(Verification)
        for sop_class in QR_MODELS:
            ae.add_supported_context(sop_class)
        # pynetdicom accepts the first of *our* syntaxes the peer proposes: Explicit VR LE first, the
        # form stored files usually have, so C-GET sends them unconverted.
        for sop_class in ALL_STORAGE_SOP_CLASSES:  # C-STORE into us, and the SCP role C-GET needs
            ae.add_supported_context(sop_class, TRANSFER_SYNTAXES, scu_role=False, scp_role=True)
        return ae

    # ---- life cycle ----

    def start(self) -> "DemoPACS":
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        self.reindex()
        handlers = [(evt.EVT_CONN_OPEN, set_nodelay), (evt.EVT_C_FIND, self._on_find), (evt.EVT_C_MOVE, self._on_move),
                    (evt.EVT_C_GET, self._on_get), (evt.EVT_C_STORE, self._on_store)]
        self._server = self.ae.start_server((self.host, self.requested_port), block=False, evt_handlers=handlers)
        log.info("DemoPACS %s listening on %s:%s with %d instances", self.ae_title, self.host, self.port,
                 len(self._index))
        return self

    def stop(self) -> None:
        super().stop()
        self.ae.shutdown()

    # ---- index ----

    def reindex(self) -> int:
        index = {}
        for path in sorted(self.storage_dir.rglob("*")):
            if path.is_file() and not path.name.startswith(".") and path.suffix != ".json":
                record = read_record(path)
                if record:
                    index[record["SOPInstanceUID"]] = record
        with self._lock:
            self._index = index
        return len(index)

    def records(self) -> list[dict]:
        with self._lock:
            return list(self._index.values())

    def _select(self, identifier: Dataset, sop_class: str, *, need_unique_key: bool) -> tuple[str, list[dict]]:
        level = text_value(identifier.get("QueryRetrieveLevel")).upper()
        if level not in QR_MODELS[sop_class][1]:
            raise InvalidIdentifier(f"QueryRetrieveLevel {level!r} is not valid for this model")
        key = UNIQUE_KEY[level]
        if need_unique_key and (key not in identifier or not requested_values(identifier[key])):
            raise InvalidIdentifier(f"a retrieve at {level} level needs {key}")
        return level, [row for row in entity_rows(self.records(), level) if matches(row, identifier)]

    def _instances(self, identifier: Dataset, sop_class: str) -> list[dict]:
        _, rows = self._select(identifier, sop_class, need_unique_key=True)
        return sorted((m for row in rows for m in row["_members"]), key=lambda m: str(m["path"]))

    # ---- DIMSE handlers ----

    def _on_find(self, event):
        try:
            level, rows = self._select(event.identifier, event.request.AffectedSOPClassUID, need_unique_key=False)
        except InvalidIdentifier as exc:
            log.info("C-FIND refused: %s", exc)
            yield IDENTIFIER_MISMATCH, None
            return
        for row in rows:
            if event.is_cancelled:
                yield CANCELED, None
                return
            yield PENDING, find_response(row, event.identifier, level, self.ae_title)

    def _on_get(self, event):
        try:
            instances = self._instances(event.identifier, event.request.AffectedSOPClassUID)
        except InvalidIdentifier as exc:
            log.info("C-GET refused: %s", exc)
            yield 1
            yield IDENTIFIER_MISMATCH, None
            return
        yield len(instances)
        yield from self._send(event, instances)

    def _on_move(self, event):
        destination = self._destinations.get(event.move_destination or "")
        if destination is None:
            log.info("C-MOVE to undeclared destination %r refused", event.move_destination)
            yield None, None  # pynetdicom answers 0xA801 Move Destination Unknown
            return
        # An invalid identifier raises here, before the sub-association: pynetdicom answers 0xC514.
        instances = self._instances(event.identifier, event.request.AffectedSOPClassUID)
        host, port, called_ae = destination
        requestor_ae = event.assoc.requestor.ae_title
        yield host, port, {"ae_title": called_ae, "contexts": storage_contexts(instances),
                           "evt_handlers": [(evt.EVT_CONN_OPEN, self._on_move_destination_open, [requestor_ae])]}
        yield len(instances)
        yield from self._send(event, instances)

    @staticmethod
    def _on_move_destination_open(event, requestor_ae: str) -> None:
        set_nodelay(event)
        # pynetdicom 3.0.4 writes its *own* AE title as Move Originator AE Title of each C-STORE
        # sub-operation. PS3.7 C.4.2.1.4 wants the AE that asked for the move, and receivers (the
        # portal's included) file instances by (originator AE, message ID); so put the requestor's in.
        send_c_store = event.assoc.send_c_store

        def send_for_requestor(dataset, msg_id=1, priority=2, originator_aet=None, originator_id=None):
            return send_c_store(dataset, msg_id, priority, requestor_ae, originator_id)

        event.assoc.send_c_store = send_for_requestor

    @staticmethod
    def _send(event, instances: list[dict]):
        for record in instances:
            if event.is_cancelled:
                yield CANCELED, None
                return
            # A freshly read dataset keeps its elements raw, so it is re-sent as the stored bytes.
            yield PENDING, pydicom.dcmread(record["path"])

    def _on_store(self, event) -> int:
        data = event.encoded_dataset(include_meta=True)
        try:
            sop_uid = safe_uid(event.request.AffectedSOPInstanceUID)
            header = pydicom.dcmread(BytesIO(data), stop_before_pixels=True)
            study_uid = safe_uid(header.get("StudyInstanceUID", ""))
        except (ValueError, InvalidDicomError) as exc:
            log.info("C-STORE refused: %s", exc)
            return CANNOT_UNDERSTAND
        with self._lock:
            known = self._index.get(sop_uid)
        target = known["path"] if known else self.storage_dir / "received" / study_uid / f"{sop_uid}.dcm"
        try:
            write_atomically(target, data)
        except OSError as exc:
            log.warning("C-STORE could not be written: %s", exc)
            return OUT_OF_RESOURCES
        record = read_record(target)
        if record is None:
            return CANNOT_UNDERSTAND
        with self._lock:
            self._index[record["SOPInstanceUID"]] = record
        return SUCCESS


def parse_destination(text: str) -> tuple[str, str, str, int]:
    """'NAME=AET@host:port' or 'AET@host:port' -> (name, called AE, host, port)."""
    match = re.fullmatch(r"(?:([^=@]+)=)?([^=@]+)@([^:@]+):(\d+)", text.strip())
    if not match:
        raise argparse.ArgumentTypeError(f"expected NAME=AET@host:port or AET@host:port, got {text!r}")
    name, called_ae, host, port = match.groups()
    return name or called_ae, called_ae, host, int(port)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dir", required=True, help="folder of DICOM files to serve; C-STOREs land here")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--aet", default="DEMO")
    parser.add_argument("--dest", action="append", default=[], type=parse_destination,
                        help="C-MOVE destination NAME=AET@host:port (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = stop_on_signals()
    try:
        pacs = DemoPACS(args.dir, ae_title=args.aet, host=args.host, port=args.port)
        for name, called_ae, host, port in args.dest:
            pacs.add_destination(name, host, port, called_ae=called_ae)
    except ValueError as exc:
        parser.error(str(exc))
    with pacs:
        print(f"DemoPACS {args.aet} on {args.host}:{pacs.port} serving {len(pacs.records())} instances",
              flush=True)
        stop.wait()


if __name__ == "__main__":
    main()
