"""The C-STORE SCU of every send (why on sockets: wire/__init__.py). It reads each file once, hands command
and dataset to the socket without copying them (scatter-gather), and reads the response itself, on the
requestor's side of the upper layer (wire/requestor.py). The contract and its errors:
apps.dicom.scu.StoreAssociation.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

from apps.dicom import files, split
from apps.dicom.errors import AssociationAborted, AssociationRejected, DicomTimeout
from apps.dicom.outcomes import StoreOutcome, not_accepted, store_words
from apps.dicom.peers import LocalAE, RemoteAE
from apps.dicom.wire import commands, pdu
from apps.dicom.wire.requestor import RequestorAssociation


class StoreAssociation(RequestorAssociation):
    """One association proposing exactly the (SOP class, transfer syntax) pairs of the files to send."""

    def __init__(self, peer: RemoteAE, local: LocalAE, pairs: list[tuple[str, str]]):
        super().__init__(peer, local)
        self.pairs = list(pairs)
        self.by_pair: dict[tuple[str, str], int] = {}
        self.message_id = 0
        self.response: dict[int, bytes] | None = None

    def negotiate(self) -> None:
        super().negotiate([(sop_class, [syntax]) for sop_class, syntax in self.pairs])
        self.by_pair = {pair: 2 * n + 1 for n, pair in enumerate(self.pairs) if 2 * n + 1 in self.contexts}
        if not self.by_pair:
            raise AssociationRejected(f"{self.peer.label} accepted the association but none of the kinds of "
                                      "object (SOP class and encoding) we offered to send.")

    def store_file(self, path, info: files.DicomFileInfo) -> StoreOutcome:
        """C-STORE one file (its header read by files.read_meta: `info`) as its bytes. A failure status is
        an outcome (ok=False); a file that is not complete DICOM raises InvalidDicomFile. A large file is
        proven complete and sent where it lies, never read into memory whole."""
        context_id = self.by_pair.get((info.sop_class_uid, info.transfer_syntax_uid))
        if info.size > files.LARGE_FILE_BYTES:
            with split.open_complete(path, info) as complete:
                return self._store(str(path), info, context_id, complete)
        data = files.read_complete(path, info)
        return self._store(str(path), info, context_id, memoryview(data)[info.dataset_offset:])

    def _store(self, name: str, info: files.DicomFileInfo, context_id: int | None,
               dataset: memoryview | split.CompleteFile) -> StoreOutcome:
        if context_id is None:  # proven complete, but of a kind the peer did not accept
            return StoreOutcome.of(name, info.sop_instance_uid, None, not_accepted(self.peer, info))
        self.message_id = self.message_id % 65535 + 1
        command = commands.encode({commands.AFFECTED_SOP_CLASS: info.sop_class_uid,
                                   commands.COMMAND_FIELD: commands.C_STORE_RQ,
                                   commands.MESSAGE_ID: self.message_id, commands.PRIORITY: commands.PRIORITY_MEDIUM,
                                   commands.DATASET_TYPE: commands.HAS_DATASET,
                                   commands.AFFECTED_SOP_INSTANCE: info.sop_instance_uid})
        try:
            command_pdus = pdu.p_data_buffers(context_id, True, command, self.peer_max_pdu)
            if isinstance(dataset, split.CompleteFile):
                pdu.send_buffers(self.sock, command_pdus)
                pdu.send_file_p_data(self.sock, context_id, dataset.fp, info.dataset_offset, dataset.dataset_size,
                                     self.peer_max_pdu)
            else:  # command and dataset in one scatter-gather send
                pdu.send_buffers(self.sock, command_pdus
                                 + pdu.p_data_buffers(context_id, False, dataset, self.peer_max_pdu))
            rsp = self._wait_for_response(time.monotonic() + self.peer.retrieve_timeout)
        except (pdu.PeerClosed, OSError) as exc:
            raise AssociationAborted(f"{self.peer.label} dropped the association during the C-STORE ({exc}). "
                                     "Check the PACS log; try again.") from None
        status = commands.us(rsp, commands.STATUS)
        if status is None:
            raise pdu.ProtocolError("a C-STORE-RSP without a status")
        return StoreOutcome.of(name, info.sop_instance_uid, status,
                               store_words(status, commands.text(rsp.get(commands.ERROR_COMMENT))))

    def _wait_for_response(self, deadline: float) -> dict[int, bytes]:
        self.response = None
        if self.serve_until(lambda: self.response is not None, deadline, "C-STORE") != "final":
            raise DicomTimeout(f"{self.peer.label} did not answer the C-STORE within {self.peer.retrieve_timeout:g} s. "
                               "The PACS may be overloaded; try again or raise the timeout.")
        return self.response

    def on_message(self, command, context_id: int, parts, release=None) -> None:
        field = commands.us(command, commands.COMMAND_FIELD)
        if field != commands.C_STORE_RSP or commands.us(command, commands.RESPONDING_TO) != self.message_id:
            raise pdu.ProtocolError(f"unexpected DIMSE command 0x{field or 0:04X} while waiting for a C-STORE-RSP",
                                    pdu.UNEXPECTED_PDU)
        self.response = command


@contextmanager
def store_association(peer: RemoteAE, local: LocalAE, pairs: list[tuple[str, str]]) -> Iterator[StoreAssociation]:
    """An association for sending files with these (SOP class, transfer syntax) pairs: released at the end,
    aborted if the block raises. A peer breaking the protocol becomes AssociationAborted."""
    assoc = StoreAssociation(peer, local, pairs)
    assoc.connect()
    try:
        assoc.negotiate()
        yield assoc
    except pdu.ProtocolError as exc:
        assoc.close(release=False)
        raise AssociationAborted(f"{peer.label} broke the DICOM protocol while we sent ({exc}).") from None
    except (pdu.PeerClosed, OSError) as exc:
        assoc.close(release=False)
        raise AssociationAborted(f"{peer.label} dropped the association ({exc}). Check the PACS log; "
                                 "try again.") from None
    except BaseException:
        assoc.close(release=False)
        raise
    assoc.close(release=True)
