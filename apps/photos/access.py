"""Who may do what with photos: the Django permissions the photo routes need (granted to groups in the
admin), and the DICOM servers a user may send to (DicomServer.may)."""
from rest_framework.permissions import BasePermission

from apps.servers.models import DicomServer

SEND_PHOTOS = "photos.send_photos"
VIEW_SETTINGS = "photos.view_photosettings"
CHANGE_SETTINGS = "photos.change_photosettings"


def requires(*perms: str, staff: bool = False, why: str = "") -> type[BasePermission]:
    """A DRF permission class: logged in, holding every one of `perms` (and staff when asked)."""

    class Required(BasePermission):
        message = why or f"You need the permission(s) {', '.join(perms)}; ask an administrator."

        def has_permission(self, request, view) -> bool:
            user = request.user
            return bool(user and user.is_authenticated and (user.is_staff or not staff) and user.has_perms(perms))

    return Required


def sendable_servers(user) -> list[DicomServer]:
    """The DICOM servers `user` may send photos to (its send groups, unless a server is open to everyone)."""
    return [server for server in DicomServer.objects.all() if server.may(user, "send")]
