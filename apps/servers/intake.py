"""How an echo job starts: one item per server, from the API, the admin's button or a test."""
from apps.servers.models import EchoItem, EchoJob


def create_echo_job(servers, *, user=None, description: str = "Echo every server") -> EchoJob:
    """The job with one item per server (a server listed twice gets two), not yet started."""
    job = EchoJob.objects.create(created_by=user, description=description)
    EchoItem.objects.bulk_create(EchoItem(job=job, dicom_server=s, server_name=s.name) for s in servers)
    return job


def start_echo_job(servers, *, user=None) -> EchoJob:
    job = create_echo_job(servers, user=user)
    job.start(user=user)
    return job
