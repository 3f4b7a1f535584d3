"""Who may do what with photos, in one place: Django permissions (granted to groups in the admin) and
the DICOM servers a user may send to."""
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


def sendable_servers(user):
    """The DICOM servers `user` may send photos to."""
    return DicomServer.objects.all()
