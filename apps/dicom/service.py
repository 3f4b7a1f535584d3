"""The shape every listening service of the DICOM layer shares (the two Storage SCPs, the demo PACS), and
how a process running one stops on a signal."""
from __future__ import annotations

import os
import signal
import threading


class Service:
    """Runs between start() and stop(), or as `with Service(...) as running:`. `_server` is the
    pynetdicom server thread of the services built on pynetdicom."""

    _server = None

    def start(self):
        raise NotImplementedError

    def bound_port(self) -> int | None:
        """The port listened on, None when not started."""
        return self._server.server_address[1] if self._server is not None else None

    @property
    def port(self) -> int:
        port = self.bound_port()
        if port is None:
            raise RuntimeError(f"the {type(self).__name__} is not started")
        return port

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_on_signals(*signals: int) -> threading.Event:
    """An Event set once one of `signals` (default SIGTERM and SIGINT) arrives; call from the main thread,
    which may then wait on it.

    Not `signal.signal(sig, lambda *_: event.set())`: Python runs that handler in the main thread between
    two bytecodes, possibly while the same thread is inside event.wait() holding the event's lock; set()
    then waits for that lock for ever (`manage.py receive` ignored SIGTERM about 1 time in 25). Here the
    interpreter's own C handler writes the signal's number to a pipe (signal.set_wakeup_fd) and a thread
    of ours, reading it, sets the event. The process has one such pipe: the last call's serves."""
    wanted = set(signals or (signal.SIGTERM, signal.SIGINT))
    stop = threading.Event()
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C handler must never block

    def watch() -> None:
        while True:
            if any(number in wanted for number in os.read(read_fd, 64)):
                stop.set()

    for sig in wanted:
        signal.signal(sig, lambda *_: None)  # handled (not the default action): the number reaches the pipe
    signal.set_wakeup_fd(write_fd)
    threading.Thread(target=watch, name="stop-on-signals", daemon=True).start()
    return stop
