"""Plain descriptions of the parties in a DICOM exchange. Models convert themselves into these."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional


@dataclass(frozen=True)
class LocalAE:
    """Who we are: our AE title, and where our Storage SCP (the receiver) listens."""

    ae_title: str = "PACSPORTAL"
    host: str = "127.0.0.1"
    port: int = 11112


@dataclass(frozen=True)
class RemoteAE:
    """A DIMSE peer (a PACS). Timeouts are seconds; they bound every network wait."""

    ae_title: str
    host: str
    port: int
    name: str = ""  # the portal's short name (e.g. "LK"), used in messages
    connect_timeout: float = 10.0
    query_timeout: float = 30.0  # one C-FIND / C-ECHO exchange
    retrieve_timeout: float = 120.0  # one C-MOVE / C-GET, and silence between instances
    max_pdu: int = 0  # 0 = unlimited: largest PDUs the peer accepts
    tls_cert: Optional[str] = None  # our certificate (PEM) for TLS, with tls_key
    tls_key: Optional[str] = None
    tls_ca: Optional[str] = None  # CA bundle to verify the peer; TLS is on when this is set

    @property
    def label(self) -> str:
        where = f"{self.ae_title}@{self.host}:{self.port}"
        return f"{self.name} ({where})" if self.name else where


@dataclass(frozen=True)
class DicomWebEndpoint:
    """A DICOMweb service root, e.g. http://127.0.0.1:8042/dicom-web."""

    base_url: str
    auth: Literal["none", "basic", "bearer"] = "none"
    username: str = ""
    password: str = ""
    token: str = ""
    timeout: float = 60.0
    name: str = ""
    verify_tls: bool = True  # False accepts any certificate (self-signed test servers)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.base_url})" if self.name else self.base_url
