"""Where a delivery goes: another PACS Portal (tus upload), a PACS by C-STORE or STOW-RS, or a folder."""
from pathlib import Path

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models

from apps.dicom import paths
from apps.servers.models import DicomServer, server_name_validator
from apps.servers.outbound import check_outbound_url


def delivery_roots() -> list[Path]:
    return [Path(p).resolve() for p in [*settings.DELIVERY_ROOTS, *settings.IMPORT_ROOTS]]


def confined_folder(path: str) -> Path:
    """The folder resolved (symlinks and `..`), or ValidationError unless it lies inside a root
    (apps/dicom/paths.confine decides)."""
    if not path:
        raise ValidationError({"path": "A folder target needs a path."})
    roots = delivery_roots()
    try:
        return paths.confine(path, roots, what="folder", roots_name="DELIVERY_ROOTS or IMPORT_ROOTS")
    except paths.PathOutside:
        allowed = ", ".join(str(r) for r in roots) or "none configured (set DELIVERY_ROOTS)"
        raise ValidationError({"path": f"{path} is not inside an allowed delivery folder ({allowed})."}) from None
    except paths.PathRefused as exc:
        raise ValidationError({"path": str(exc)}) from None


class DeliveryTarget(models.Model):
    class Kind(models.TextChoices):
        PORTAL = "portal", "another PACS Portal (resumable upload)"
        DICOM = "dicom", "a DICOM server by C-STORE"
        DICOMWEB = "dicomweb", "a DICOM server by STOW-RS"
        FOLDER = "folder", "a folder"

    name = models.CharField(max_length=32, unique=True, validators=[server_name_validator])
    kind = models.CharField(max_length=10, choices=Kind.choices)
    url = models.URLField("portal URL", blank=True, help_text="Base URL of the receiving portal, e.g. https://far:8000")
    token = models.CharField("portal API token", max_length=200, blank=True,
                             help_text="A token of a user of the receiving portal allowed to upload.")
    server = models.ForeignKey(DicomServer, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    path = models.CharField(max_length=500, blank=True, help_text="Folder inside DELIVERY_ROOTS or IMPORT_ROOTS.")
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "delivery target"

    def __str__(self) -> str:
        return f"{self.name} ({self.kind})"

    def clean(self):
        if self.kind == self.Kind.PORTAL and not (self.url and self.token):
            raise ValidationError("A portal target needs the receiving portal's URL and an API token of it.")
        if self.kind in (self.Kind.DICOM, self.Kind.DICOMWEB) and self.server is None:
            raise ValidationError({"server": "A DICOM target names one of the configured DICOM servers."})
        if self.kind == self.Kind.DICOMWEB and self.server and not self.server.dicomweb_url:
            raise ValidationError({"server": f"Server {self.server.name} has no DICOMweb URL."})
        if self.kind == self.Kind.FOLDER:
            confined_folder(self.path)

    @property
    def zippable(self) -> bool:
        """Zip mode applies to portals and folders; DICOM targets always take the files themselves."""
        return self.kind in (self.Kind.PORTAL, self.Kind.FOLDER)

    DESTINATION_FIELDS = ("kind", "url", "server", "path")  # where it sends: only staff set these

    def check_url(self) -> None:
        """The outbound-URL rule (apps/servers/outbound.py), for a portal target whose URL is set or
        changed now; delivering checks it again before anything is sent."""
        if self.kind == self.Kind.PORTAL:
            check_outbound_url(self.url, "url")

    def uploads_url(self) -> str:
        return self.url.rstrip("/") + "/api/uploads/"

    def describe(self) -> str:
        where = {"portal": self.url, "folder": self.path}.get(self.kind) or (self.server.name if self.server else "")
        return f"{self.name} ({self.kind} {where})"
