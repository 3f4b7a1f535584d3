"""Where the portal may send data and credentials over HTTP: one rule for delivery targets and servers'
DICOMweb URLs.

A URL must be `https` and its host must not be (or resolve to) a loopback, link-local, unspecified
(0.0.0.0, ::), broadcast or multicast address: otherwise anybody who may save a URL could make the
portal post patients' images and a stored token to its own services (an Orthanc on 127.0.0.1:8042, a
cloud metadata address). Private hospital ranges (10/8, 172.16/12, 192.168/16) stay allowed over https.
A host listed in the setting TRUSTED_HTTP_HOSTS (`host` or `host:port`) is exempt from both rules: a
portal or PACS on the same machine, or one reached over plain http inside a trusted network.

A stored secret belongs to the URL it was typed for: `secret_after_change` clears it when the scheme,
host, port or path changes, unless the same request supplies a new one."""
from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError

DEFAULT_PORTS = {"http": 80, "https": 443}


def _parts(url: str) -> tuple[str, str, int | None, str]:
    """(scheme, host, port, path) with the scheme and host lowercased and the port made explicit."""
    parts = urlsplit(url or "")
    try:
        port = parts.port
    except ValueError:
        port = -1  # not a number or out of range: never equal to a real one
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), port or DEFAULT_PORTS.get(scheme), parts.path.rstrip("/")


def same_destination(old: str, new: str) -> bool:
    """Whether two URLs send to the same place (scheme, host, port and path; the query is not compared)."""
    return _parts(old) == _parts(new)


def secret_after_change(old_url: str, new_url: str, stored: str, supplied: str | None) -> str:
    """The secret to keep: the one supplied with this change, else the stored one if the URL still
    sends to the same place, else none."""
    if supplied:
        return supplied
    return stored if same_destination(old_url, new_url) else ""


def _trusted_entries() -> list[tuple[str, int | None]]:
    entries = []
    raw = settings.TRUSTED_HTTP_HOSTS
    for entry in (raw.split(",") if isinstance(raw, str) else raw):
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry.startswith("["):  # [::1]:8000
            host, _, rest = entry[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        elif entry.count(":") == 1:
            host, port = entry.split(":")
        else:
            host, port = entry, ""
        entries.append((host, int(port) if port.isdigit() else None))
    return entries


def is_trusted(host: str, port: int | None) -> bool:
    return any(host == h and (p is None or p == port) for h, p in _trusted_entries())


def forbidden_address(address: str) -> str | None:
    """Why this IP address may not be sent to, or None."""
    ip = ipaddress.ip_address(address.split("%")[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:
        return "a loopback address"
    if ip.is_link_local:
        return "a link-local address"
    if ip.is_unspecified:
        return "the unspecified address"
    if ip.is_multicast or ip == ipaddress.IPv4Address("255.255.255.255"):
        return "a broadcast or multicast address"
    return None


def _addresses(host: str, port: int | None) -> list[str]:
    """The host's addresses: itself if it is one, else what it resolves to (nothing if it does not)."""
    try:
        return [str(ipaddress.ip_address(host.split("%")[0]))]
    except ValueError:
        pass
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)})
    except (OSError, UnicodeError):
        return []  # not resolvable here and now: nothing can be sent to it either; checked again before sending


def outbound_problem(url: str) -> str | None:
    """Why the portal may not send to `url`, or None."""
    scheme, host, port, _ = _parts(url)
    if scheme not in DEFAULT_PORTS or not host:
        return f"{url} is not an http(s) URL with a host"
    if port == -1:
        return f"{url} has an invalid port"
    if is_trusted(host, port):
        return None
    hint = f" (unless {host} or {host}:{port} is listed in TRUSTED_HTTP_HOSTS)"
    if scheme != "https":
        return f"{url} must use https: images and credentials are not sent in the clear{hint}"
    for address in _addresses(host, port):
        why = forbidden_address(address)
        if why:
            named = host if host == address else f"{host} ({address})"
            return f"{url} points at {named}, {why}; the portal does not send there{hint}"
    return None


def check_outbound_url(url: str, field: str = "url") -> None:
    """ValidationError on `field` unless the portal may send to `url` (empty: nothing to check)."""
    if url:
        problem = outbound_problem(url)
        if problem:
            raise ValidationError({field: problem})
