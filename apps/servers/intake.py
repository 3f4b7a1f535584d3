"""How an echo job starts: one item per server, from the API, the admin's button or a test."""
from apps.servers.models import EchoItem, EchoJob


def create_echo_job(servers, *, user=None, description: str = "Echo every server") -> EchoJob:
    """The job with one item per server (a server listed twice gets two), not yet started."""
    job = EchoJob.objects.create(created_by=user, description=description)
    EchoItem.objects.bulk_create(EchoItem(job=job, dicom_server=s, server_name=s.name) for s in servers)
    return job


def start_echo_job(servers, *, user=None) -> EchoJob:
    """Echoes only the servers this user may use (query, retrieve from or send to): an echo opens an
    association, which a server closed to the user's groups must not see from them."""
    servers = [s for s in servers if s.may_use(user)]
    job = create_echo_job(servers, user=user)
    job.start(user=user)
    return job
