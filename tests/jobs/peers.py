"""An in-process Verification SCP that records what it saw: echoes per called AE title (so each
EchoItem, aimed at its own AE title, leaves a countable side effect) and the most associations open
at once. `delay` makes each echo slow enough to kill a worker in the middle of one."""
import socket
import threading
import time
from collections import Counter

from pynetdicom import AE, evt
from pynetdicom.sop_class import Verification


class RecordingEchoSCP:
    def __init__(self, delay: float = 0.0):
        self.delay = delay
        self.echoes = Counter()  # called AE title -> echo requests received
        self.answered = Counter()  # called AE title -> echoes answered after the delay
        self.open_now = 0
        self.most_open = 0
        self.opened = 0  # associations (connections) accepted in all
        self._lock = threading.Lock()
        ae = AE(ae_title="RECORDER")
        ae.add_supported_context(Verification)
        ae.require_called_aet = False
        ae.maximum_associations = 64
        handlers = [(evt.EVT_CONN_OPEN, self._opened), (evt.EVT_CONN_CLOSE, self._closed),
                    (evt.EVT_C_ECHO, self._echo)]
        self._server = ae.start_server(("127.0.0.1", 0), block=False, evt_handlers=handlers)
        self.port = self._server.server_address[1]

    def _opened(self, event):
        event.assoc.dul.socket.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self.opened += 1
            self.open_now += 1
            self.most_open = max(self.most_open, self.open_now)

    def _closed(self, event):
        with self._lock:
            self.open_now -= 1

    def _echo(self, event):
        called = event.assoc.acceptor.primitive.called_ae_title.strip()  # the AE title the caller asked for
        with self._lock:
            self.echoes[called] += 1
        time.sleep(self.delay)
        with self._lock:
            self.answered[called] += 1
        return 0x0000

    def shutdown(self):
        self._server.shutdown()
