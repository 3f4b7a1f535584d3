"""A Storage SCP written directly on sockets: the receiver's fast path.

Why on sockets: wire/__init__.py. This SCP does only what storage needs
(PS3.8 upper layer in wire/pdu.py, command sets in wire/commands.py; PS3.7 C-STORE and C-ECHO),
reads PDUs into buffers without decoding the dataset, and hands each instance to a callback (a
ReceivedInstance, the dataset bytes as received) through the checks of wire/received.deliver. One thread per association; TCP_NODELAY; large PDUs.

What a peer may cost is bounded (ReceiverLimits): PDU buffers grow as the bytes arrive (wire/pdu.py),
at most `max_associations` associations run at once (one more is rejected, transient, "local limit
exceeded"), at most MAX_HANDSHAKES connections negotiate at once (more wait in the listen backlog),
and timeouts end silent or trickling peers. On a port shared by several processes (`manage.py receive`),
a process at its share of the limit stays out of accept() for up to FULL_WAIT_SECONDS, so a burst that
the kernel happened to hand mostly to it goes to the others instead of being refused.
"""
from __future__ import annotations

import logging
import socket
import threading
import time
from typing import Callable

from pynetdicom.sop_class import Verification

from apps.dicom.peers import LocalAE
from apps.dicom.service import Service
from apps.dicom.syntaxes import ALL_STORAGE_SOP_CLASSES, TRANSFER_SYNTAXES
from apps.dicom.wire import commands, pdu, streamed
from apps.dicom.wire.messages import MessageAssembler, answer_c_store
from apps.dicom.wire.received import PeerCutOff, ReceivedInstance, ReceiverLimits, Throttle

log = logging.getLogger(__name__)

MAX_PDU = 4 * 1024 * 1024  # we accept P-DATA-TF this large: a 512x512 CT travels in one PDU
MAX_HANDSHAKES = 64  # connections not yet associated; each holds a thread until its A-ASSOCIATE-RQ is read
LISTEN_BACKLOG = 128
LOCAL_LIMIT_EXCEEDED = (2, 3, 2)  # A-ASSOCIATE-RJ: rejected-transient, presentation service provider, reason 2
STOP_GRACE_SECONDS = 10.0  # on stop, running associations get this long to finish before they are cut
FULL_WAIT_SECONDS = 1.0  # a process at its share of a shared port leaves new connections this long to the others
STORAGE_SOP_CLASSES = frozenset(ALL_STORAGE_SOP_CLASSES)
ACCEPTED_TRANSFER_SYNTAXES = frozenset(TRANSFER_SYNTAXES)


class Admission:
    """Who comes in: at most `limit` associations at once, and at most `handshakes` connections negotiating
    (each holds a thread until its A-ASSOCIATE-RQ is read; more wait in the listen backlog). Both are also
    counted per peer address, so one address cannot take every slot (take(), address_handshake())."""

    def __init__(self, limit: int, handshakes: int = MAX_HANDSHAKES):
        self.limit, self.handshakes = limit, handshakes
        self.associations = self.negotiating = 0
        self.by_address: dict[str, int] = {}  # associations per peer address
        self.negotiating_by_address: dict[str, int] = {}
        self.refused_full_at = 0.0  # time.time() of the last association refused for want of a slot
        self.refused = 0  # peers refused since the process started (any reason), for /metrics
        self.refused_full = threading.Event()  # set with it: whoever publishes the state may do so at once
        self._changed = threading.Condition()

    def address_handshake(self, address: str, cap: int) -> bool:
        """One of the address's `cap` negotiating places (0: any); the connection is closed at once without."""
        with self._changed:
            if cap and self.negotiating_by_address.get(address, 0) >= cap:
                return False
            self.negotiating_by_address[address] = self.negotiating_by_address.get(address, 0) + 1
            return True

    def end_address_handshake(self, address: str) -> None:
        with self._changed:
            left = self.negotiating_by_address.get(address, 1) - 1
            if left > 0:
                self.negotiating_by_address[address] = left
            else:
                self.negotiating_by_address.pop(address, None)

    def begin_handshake(self, timeout: float) -> bool:
        with self._changed:
            if not self._changed.wait_for(lambda: self.negotiating < self.handshakes, timeout):
                return False
            self.negotiating += 1
            return True

    def end_handshake(self) -> None:
        with self._changed:
            self.negotiating -= 1
            self._changed.notify_all()

    def take(self, address: str = "", cap: int = 0) -> str | None:
        """One association slot for a peer at `address`, at most `cap` of them for that address (0: any);
        None when taken, else why not."""
        with self._changed:
            if self.associations >= self.limit:
                self.refused_full_at = time.time()
                self.refused_full.set()
                return f"{self.associations} associations are running, the limit"
            if cap and self.by_address.get(address, 0) >= cap:
                return f"{cap} associations from {address} are running, the limit for one address"
            self.associations += 1
            self.by_address[address] = self.by_address.get(address, 0) + 1
            return None

    def give_back(self, address: str = "") -> None:
        with self._changed:
            self.associations -= 1
            left = self.by_address.get(address, 1) - 1
            if left > 0:
                self.by_address[address] = left
            else:
                self.by_address.pop(address, None)
            self._changed.notify_all()

    def state(self) -> dict:
        """What /healthz and a failing retrieval read (see `manage.py receive`): slots in use and the last refusal."""
        with self._changed:
            return {"associations": self.associations, "limit": self.limit, "refused_full_at": self.refused_full_at,
                    "addresses": len(self.by_address), "refused": self.refused}

    def count_refusal(self) -> None:
        with self._changed:
            self.refused += 1

    def wait_for_room(self, timeout: float) -> bool:
        """Until another connection could become an association, counting those still negotiating."""
        with self._changed:
            return self._changed.wait_for(lambda: self.associations + self.negotiating < self.limit, timeout)


class _Association(MessageAssembler):
    """One accepted connection: negotiate, then answer C-STORE/C-ECHO until release or abort."""

    def __init__(self, sock: socket.socket, scp: "LeanStorageSCP"):
        self.sock, self.scp, self.local, self.on_instance = sock, scp, scp.local, scp.on_instance
        self.accepts_calling_ae = scp.accepts_calling_ae
        self.holds_slot = False  # one of the SCP's max_associations slots
        self.engaged = False  # an instance of ours was kept: the full idle timeout applies from then on
        self.calling_ae = ""
        try:
            self.peer_address = sock.getpeername()[0]
        except OSError:
            self.peer_address = ""
        self.peer_max_pdu = 0
        self.contexts: dict[int, tuple[str, str]] = {}  # accepted id -> (abstract syntax, transfer syntax)
        self.reset_message()

    def run(self) -> None:
        limits = self.scp.limits
        try:
            admission = self.scp.admission
            try:
                if not admission.address_handshake(self.peer_address, self.scp.address_cap(
                        self.peer_address, limits.handshakes_per_address)):
                    self.scp.say_refused(self.peer_address, "too many connections negotiating from its address")
                    return
                try:  # the A-ASSOCIATE-RQ must come soon after connecting
                    self.sock.settimeout(min(limits.pdu_timeout, limits.quiet_timeout))
                    associated = self._negotiate()
                finally:
                    admission.end_address_handshake(self.peer_address)
            finally:
                admission.end_handshake()
            if associated:  # each wait inside a PDU bounded by the PDU timeout, between PDUs by the idle one
                self.sock.settimeout(min(limits.idle_timeout, limits.pdu_timeout, limits.quiet_timeout))
                self._serve()
        except pdu.PeerClosed as exc:
            log.debug("association with %s ended: %s", self.calling_ae or "a peer", exc)
        except PeerCutOff as exc:  # the callback said why, once
            log.debug("aborting the association: %s", exc)
            self._send_quietly(pdu.abort(0, 0))
            self._drain()
        except pdu.ProtocolError as exc:
            log.warning("aborting the association with %s: %s", self.calling_ae or "a peer", exc)
            self._send_quietly(pdu.abort(2, exc.reason))
            self._drain()
        except socket.timeout as exc:
            quiet = self.scp.throttle.due(self.peer_address)
            if quiet is not None:
                log.warning("aborting the association with %s at %s: %s (silent for up to %g s between PDUs, %g s "
                            "before sending an instance we keep, %g s for a PDU)%s", self.calling_ae or "a peer",
                            self.peer_address, "silent too long" if str(exc) == "timed out" else exc,
                            limits.idle_timeout, limits.quiet_timeout, limits.pdu_timeout, _more(quiet))
            self._send_quietly(pdu.abort(2, 0))
        except OSError as exc:
            log.debug("association with %s lost: %s", self.calling_ae or "a peer", exc)
        except Exception:  # a bug here must cost one association, never the receiver
            log.exception("receiver error on the association with %s", self.calling_ae or "a peer")
            self._send_quietly(pdu.abort(2, 0))
        finally:
            self.abandon_message()
            if self.holds_slot:
                self.scp.admission.give_back(self.peer_address)
            self.sock.close()

    def _drain(self) -> None:
        """Read what the peer already sent before closing: closing with unread data sends a TCP reset,
        which can destroy our A-ABORT before the peer reads it."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
            self.sock.settimeout(1.0)
            for _ in range(256):  # at most ~16 MB, at most a second of silence
                if not self.sock.recv(65536):
                    return
        except OSError:
            pass

    def _send_quietly(self, pdu: bytes) -> None:
        try:
            self.sock.sendall(pdu)
        except OSError:
            pass

    def _negotiate(self) -> bool:
        pdu_type, body = pdu.read_pdu(self.sock, pdu.MAX_ASSOCIATE_RQ)
        if pdu_type != pdu.ASSOCIATE_RQ:
            raise pdu.ProtocolError(f"expected A-ASSOCIATE-RQ, got PDU type {pdu_type}", pdu.UNEXPECTED_PDU)
        rq = pdu.parse_associate_rq(body)
        self.calling_ae, self.peer_max_pdu = rq.calling_ae, rq.max_pdu
        rejection = None
        if self.scp.accepts_address is not None and not self.scp.accepts_address(self.peer_address):
            rejection = (2, 1, 1)  # transient, no reason given: an address cut off for a while
        elif not rq.protocol_version & 1:
            rejection = (1, 2, 2)  # ACSE: protocol version not supported
        elif rq.application_context != pdu.APPLICATION_CONTEXT:
            rejection = (1, 1, 2)  # application context name not supported
        elif rq.called_ae != self.local.ae_title:
            rejection = (1, 1, 7)  # called AE title not recognised: a misconfigured PACS should hear so
        elif self.accepts_calling_ae is not None and not self.accepts_calling_ae(rq.calling_ae):
            rejection = (1, 1, 3)  # calling AE title not recognised: only configured peers may store to us
        else:
            full = self.scp.admission.take(self.peer_address,
                                           self.scp.address_cap(self.peer_address, self.scp.limits.per_address))
            if full:
                self.scp.say_refused(self.peer_address, f"association from {rq.calling_ae} rejected: {full}")
                self.sock.sendall(pdu.associate_rj(*LOCAL_LIMIT_EXCEEDED))
                return False
            self.holds_slot = True
        if rejection:
            self.scp.say_refused(self.peer_address, f"association from {rq.calling_ae} calling {rq.called_ae} "
                                                    f"rejected (reason {rejection[2]})")
            self.sock.sendall(pdu.associate_rj(*rejection))
            return False
        results = []
        for cx in rq.contexts:
            first = cx.transfer_syntaxes[0] if cx.transfer_syntaxes else ""
            if cx.abstract_syntax not in STORAGE_SOP_CLASSES and cx.abstract_syntax != Verification:
                results.append((cx.context_id, pdu.ABSTRACT_SYNTAX_NOT_SUPPORTED, first))
                continue
            chosen = next((ts for ts in cx.transfer_syntaxes if ts in ACCEPTED_TRANSFER_SYNTAXES), None)
            if chosen is None:
                results.append((cx.context_id, pdu.TRANSFER_SYNTAXES_NOT_SUPPORTED, first))
            else:
                results.append((cx.context_id, pdu.ACCEPTANCE, chosen))
                self.contexts[cx.context_id] = (cx.abstract_syntax, chosen)
        self.sock.sendall(pdu.associate_ac(rq, results, MAX_PDU))
        log.debug("association from %s: %d of %d contexts accepted", rq.calling_ae, len(self.contexts),
                  len(rq.contexts))
        return True

    def _serve(self) -> None:
        limits = self.scp.limits
        while True:
            idle_timeout = limits.idle_timeout if self.engaged else min(limits.idle_timeout, limits.quiet_timeout)
            pdu_type, length, deadline = pdu.read_pdu_header(self.sock, MAX_PDU, idle_timeout)
            if pdu_type == pdu.P_DATA_TF:
                self.receive_p_data(self.sock, length, deadline)
                continue
            pdu.read_exact(self.sock, length, deadline)
            if pdu_type == pdu.RELEASE_RQ:
                self.sock.sendall(pdu.release_rp())
                return
            elif pdu_type == pdu.ABORT:
                log.info("%s aborted the association", self.calling_ae)
                return
            else:
                raise pdu.ProtocolError(f"unexpected PDU type {pdu_type} during the association", pdu.UNEXPECTED_PDU)

    def on_message(self, command, context_id: int, parts, release=None) -> None:
        field, message_id = commands.us(command, commands.COMMAND_FIELD), commands.us(command, commands.MESSAGE_ID)
        if message_id is None:
            raise pdu.ProtocolError("a request without a message ID")
        abstract_syntax, transfer_syntax = self.contexts[context_id]
        if field == commands.C_STORE_RQ:
            status = answer_c_store(command, parts, sop_class=abstract_syntax, transfer_syntax=transfer_syntax,
                                    sender_ae=self.calling_ae, on_instance=self.on_instance, release=release,
                                    send=lambda rsp: self._answer(context_id, rsp), peer_address=self.peer_address)
            self._engage(status)
            return
        if field == commands.C_ECHO_RQ:
            rsp = commands.response(commands.C_ECHO_RSP, message_id, abstract_syntax, 0x0000)
        elif field == commands.C_CANCEL_RQ:
            return  # nothing of ours to cancel
        else:  # a service this SCP does not offer: "unrecognized operation"
            rsp = commands.response((field or 0) | 0x8000, message_id, abstract_syntax, 0x0211)
        self._answer(context_id, rsp)

    def _engage(self, status: int) -> None:
        """An instance of ours was kept: the full idle timeout applies from now on."""
        if not self.engaged and (status == 0x0000 or status & 0xF000 == 0xB000):
            self.engaged = True
            self.sock.settimeout(min(self.scp.limits.idle_timeout, self.scp.limits.pdu_timeout))

    def begin_stream(self, command, context_id: int, head):
        abstract_syntax, transfer_syntax = self.contexts[context_id]
        stream = streamed.start(command, head, sop_class=abstract_syntax, transfer_syntax=transfer_syntax,
                                sender_ae=self.calling_ae, on_instance=self.on_instance,
                                send=lambda rsp: self._answer(context_id, rsp), peer_address=self.peer_address)
        if stream is not None:
            self._engage(stream.status)
        return stream

    def _answer(self, context_id: int, rsp: bytes) -> None:
        self.sock.sendall(pdu.p_data(context_id, True, rsp, self.peer_max_pdu))


def _more(quiet: int) -> str:
    return f" ({quiet} more from that address in the last minute, not logged)" if quiet else ""


def listening_socket(host: str, port: int) -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((host, port))
    listener.listen(LISTEN_BACKLOG)
    return listener


def close_listener(listener: socket.socket) -> None:
    """Stop listening for good: shutdown() wakes every accept() blocked on it, in any process sharing it."""
    try:
        listener.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    listener.close()


class LeanStorageSCP(Service):
    """The receiver's Storage SCP: `bind_host`:`local.port` (0 = any free port),
    called AE title `local.ae_title`, `on_instance(ReceivedInstance) -> status` (thread-safe),
    `accepts_calling_ae(ae_title) -> bool` to reject associations from peers we do not know,
    `accepts_address(ip) -> bool` to reject an address cut off for a while, `trusted_address(ip) -> bool`
    (a configured server's: exempt from `limits.per_address`), and `limits`."""

    def __init__(self, local: LocalAE, on_instance: Callable[[ReceivedInstance], int], *,
                 bind_host: str = "127.0.0.1", accepts_calling_ae: Callable[[str], bool] | None = None,
                 limits: ReceiverLimits = ReceiverLimits(), listener: socket.socket | None = None,
                 accepts_address: Callable[[str], bool] | None = None,
                 trusted_address: Callable[[str], bool] | None = None, throttle: Throttle | None = None):
        """`listener`: a listening socket inherited from the process that made it and shared with other
        processes serving the same port (`manage.py receive` with several processes): accepted from,
        never shut down here; its owner shuts it down, which wakes every process's accept()."""
        self.local, self.bind_host, self.on_instance, self.limits = local, bind_host, on_instance, limits
        self.shared_listener = listener
        self.accepts_calling_ae, self.accepts_address, self.trusted_address = (accepts_calling_ae, accepts_address,
                                                                               trusted_address)
        self.admission = Admission(limits.max_associations)
        self.throttle = throttle or Throttle()  # shared with the callback's refusals: one line per address
        self._stopping = threading.Event()
        self._listener: socket.socket | None = None
        self._acceptor: threading.Thread | None = None
        self._lock = threading.Lock()
        self._active: dict[threading.Thread, socket.socket] = {}

    def bound_port(self) -> int | None:
        return self._listener.getsockname()[1] if self._listener is not None else None

    def address_cap(self, address: str, cap: int) -> int:
        """`cap` for an address that is no configured server's; 0 (no cap of its own) for a server's."""
        if not cap or (self.trusted_address is not None and self.trusted_address(address)):
            return 0
        return cap

    def say_refused(self, address: str, what: str) -> None:
        """One WARNING per peer address per minute, however many it is refused (each one counted)."""
        self.admission.count_refusal()
        quiet = self.throttle.due(address)
        if quiet is not None:
            log.warning("refused a peer at %s: %s%s", address, what, _more(quiet))

    def start(self) -> "LeanStorageSCP":
        listener = self.shared_listener or listening_socket(self.bind_host, self.local.port)
        self._listener = listener
        self._stopping.clear()
        self._acceptor = threading.Thread(target=self._accept_loop, args=(listener,), name="scp-accept", daemon=True)
        self._acceptor.start()
        log.debug("lean Storage SCP %s listening on %s:%s", self.local.ae_title, self.bind_host, self.port)
        return self

    def _accept_loop(self, listener: socket.socket) -> None:
        while not self._stopping.is_set():
            if self.shared_listener is not None:
                # At our share of the port's limit, stay out of accept() a while: the kernel then gives the
                # next connection to a process that has room. Still full after that, take it and refuse it
                # ("local limit exceeded"), so the peer hears why.
                self.admission.wait_for_room(FULL_WAIT_SECONDS)
            if not self.admission.begin_handshake(timeout=0.5):  # all busy negotiating: leave the rest waiting
                continue
            try:
                conn, _ = listener.accept()
            except OSError:  # the listener was shut down by stop() (or, when shared, by its owner)
                self.admission.end_handshake()
                return
            if self._stopping.is_set():  # a shared listener outlives our stop: this one is not ours to serve
                conn.close()
                self.admission.end_handshake()
                return
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            thread = threading.Thread(target=self._run, args=(conn,), name="scp-association", daemon=True)
            with self._lock:
                self._active[thread] = conn
            try:
                thread.start()
            except RuntimeError as exc:  # no thread to be had: this connection, not the receiver, pays
                log.warning("closing a connection: %s", exc)
                with self._lock:
                    self._active.pop(thread, None)
                conn.close()
                self.admission.end_handshake()

    def _run(self, conn: socket.socket) -> None:
        try:
            _Association(conn, self).run()
        finally:
            with self._lock:
                self._active.pop(threading.current_thread(), None)

    def stop(self, grace: float = STOP_GRACE_SECONDS) -> None:
        """Stop accepting, let running associations finish for `grace` seconds, then cut them."""
        if self._listener is None:
            return
        self._stopping.set()
        if self.shared_listener is None:
            close_listener(self._listener)
            self._acceptor.join(5)
        else:  # its owner shuts it down (that wakes our accept); ours ends with the process if not
            self._acceptor.join(0.5)
        self._listener = None
        with self._lock:
            running = list(self._active.items())
        for thread, conn in running:
            thread.join(grace / max(len(running), 1))
            if thread.is_alive():
                try:
                    conn.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                thread.join(5)
