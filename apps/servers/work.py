"""What an echo item does (registered with the runner in apps.py): C-ECHO its server, inside one of the
server's association slots, through DicomServer.echo_ms, the one echo the API and the admin use too."""
from apps.jobs.errors import ItemFailed


def echo(item, ctx) -> None:
    server = item.dicom_server
    if server is None:
        raise ItemFailed(f"Server {item.server_name} was deleted.")
    with ctx.association_slot(server):
        elapsed_ms = server.echo_ms()
    item.result["elapsed_ms"] = round(elapsed_ms, 1)
