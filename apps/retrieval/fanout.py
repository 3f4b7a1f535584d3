"""A row searched on several servers ('A|B', or '*' expanded when the list was read): the servers in the row's
order, each checked for the row's owner when the row runs (access may have been withdrawn since), and which
server each study was first found on, so a study held by two servers is fetched once, from the first."""
from __future__ import annotations

from functools import partial

from apps.jobs.errors import ItemFailed
from apps.servers.models import DicomServer


def row_servers(item, ctx=None) -> list[DicomServer]:
    """The row's servers in its order; ItemFailed naming one that is gone or that the owner may no longer
    query or retrieve from (nothing of the row runs then: a list is one request). With the row's `ctx`, the
    servers and the owner's access to each are looked up once per batch of rows (ItemContext.per_batch),
    not once per row: a batch loads its job and servers fresh and starts no row later than twice
    JOB_BATCH_SECONDS (well under a second) after it began."""
    once = ctx.per_batch if ctx is not None else (lambda key, compute: compute())
    names = item.server_names()
    if names == [item.dicom_server.name]:
        servers = [item.dicom_server]
    else:
        by_name = once(("servers", tuple(names)),
                       lambda: {s.name: s for s in DicomServer.objects.filter(name__in=names)})
        missing = [name for name in names if name not in by_name]
        if missing:
            raise ItemFailed(f"Server '{missing[0]}' of line {item.line} is no longer configured; nothing was "
                             "searched. Upload the row again.")
        servers = [by_name[name] for name in names]
    user = item.job.created_by
    for server in servers:
        for action in ("retrieve", "query") if len(servers) > 1 else ("retrieve",):
            if not once(("may", getattr(user, "pk", None), server.pk, action), partial(server.may, user, action)):
                raise ItemFailed(server.refusal(action))
    return servers


def names_of(servers) -> str:
    return ", ".join(s.name for s in servers)
