"""A row searched on several servers ('A|B', or '*' expanded when the list was read): the servers in the row's
order, each checked for the row's owner when the row runs (access may have been withdrawn since), and which
server each study was first found on, so a study held by two servers is fetched once, from the first."""
from __future__ import annotations

from apps.jobs.errors import ItemFailed
from apps.servers.models import DicomServer


def row_servers(item) -> list[DicomServer]:
    """The row's servers in its order; ItemFailed naming one that is gone or that the owner may no longer
    query or retrieve from (nothing of the row runs then: a list is one request)."""
    names = item.server_names()
    if names == [item.dicom_server.name]:
        servers = [item.dicom_server]
    else:
        by_name = {s.name: s for s in DicomServer.objects.filter(name__in=names)}
        missing = [name for name in names if name not in by_name]
        if missing:
            raise ItemFailed(f"Server '{missing[0]}' of line {item.line} is no longer configured; nothing was "
                             "searched. Upload the row again.")
        servers = [by_name[name] for name in names]
    user = item.job.created_by
    for server in servers:
        if not server.may(user, "retrieve"):
            raise ItemFailed(server.refusal("retrieve"))
        if len(servers) > 1 and not server.may(user, "query"):
            raise ItemFailed(server.refusal("query"))
    return servers


def names_of(servers) -> str:
    return ", ".join(s.name for s in servers)
