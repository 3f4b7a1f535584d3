"""The shape every listening service of the DICOM layer shares (the two Storage SCPs, the demo PACS)."""
from __future__ import annotations


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
