"""Raw and hostile peers for a receiver: reading its PDUs, and connections that announce large PDUs and
send a few bytes, the way an attacker exhausts a Storage SCP that allocates what is announced. Shared by
the receiver's tests and bench/receiver.py. Linux only (RSS from /proc)."""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field
from pathlib import Path

from pynetdicom.sop_class import Verification

from apps.dicom.wire import pdu

P_DATA_ANNOUNCED = 4 * 1024 * 1024  # what the receiver accepts as one P-DATA-TF
ASSOCIATE_RQ_ANNOUNCED = pdu.MAX_ASSOCIATE_RQ


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def recv_pdu(sock: socket.socket) -> tuple[int, bytes]:
    """(type, the whole PDU) of the next PDU the peer sends; (0, b"") when it closes first."""
    head = b""
    while len(head) < 6:
        chunk = sock.recv(6 - len(head))
        if not chunk:
            return 0, b""
        head += chunk
    length = struct.unpack(">L", head[2:])[0]
    body = b""
    while len(body) < length:
        body += sock.recv(length - len(body))
    return head[0], head + body


@dataclass
class Attack:
    """What became of the hostile connections."""
    sockets: list[socket.socket] = field(default_factory=list)  # still open, each stalled mid-PDU
    associated: int = 0  # got an A-ASSOCIATE-AC, then announced a 4 MB P-DATA-TF and sent 10 bytes
    refusals: list[tuple[int, int, int]] = field(default_factory=list)  # A-ASSOCIATE-RJ (result, source, reason)
    stalled_requests: int = 0  # announced a 1 MB A-ASSOCIATE-RQ and sent 10 bytes

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()

    def all_cut(self, timeout: float) -> bool:
        """True when the receiver ended every stalled connection within `timeout` seconds."""
        for sock in self.sockets:
            sock.settimeout(timeout)
            try:
                while sock.recv(65536):
                    pass
            except socket.timeout:
                return False
            except OSError:
                pass  # a reset is an end too
        return True


def attack(host: str, port: int, called_ae: str, *, calling_ae: str = "HOSTILE", large_p_data: int = 100,
           large_requests: int = 100) -> Attack:
    """`large_p_data` connections associate as `calling_ae` and announce a 4 MB P-DATA-TF; `large_requests`
    announce a 1 MB A-ASSOCIATE-RQ. Each then sends 10 bytes of the body and waits."""
    found = Attack()
    request = pdu.associate_rq(called_ae, calling_ae, [(Verification, ["1.2.840.10008.1.2"])], 16384)
    for _ in range(large_p_data):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(request)
        answer, raw = recv_pdu(sock)
        if answer == pdu.ASSOCIATE_AC:
            sock.sendall(struct.pack(">BBL", pdu.P_DATA_TF, 0, P_DATA_ANNOUNCED) + b"\x00" * 10)
            found.associated += 1
            found.sockets.append(sock)
        else:
            assert answer == pdu.ASSOCIATE_RJ, f"expected an A-ASSOCIATE-AC or -RJ, got PDU type {answer}"
            found.refusals.append(tuple(raw[7:10]))  # result, source, reason
            sock.close()
    for _ in range(large_requests):
        sock = socket.create_connection((host, port), timeout=10)
        sock.sendall(struct.pack(">BBL", pdu.ASSOCIATE_RQ, 0, ASSOCIATE_RQ_ANNOUNCED) + b"\x00" * 10)
        found.stalled_requests += 1
        found.sockets.append(sock)
    return found
