"""Who may send photos where. One place, so the portal's permission model reaches every photo route."""
from apps.servers.models import DicomServer


def sendable_servers(user):
    """The DICOM servers `user` may send photos to."""
    return DicomServer.objects.all()
