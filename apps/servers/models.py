"""DICOM servers the portal talks to, and who the portal itself is on the network."""
import ipaddress
import re
import socket

from django.conf import settings
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator, RegexValidator
from django.db import models
from django.db.models.functions import Lower

from apps.dicom import dimse
from apps.dicom.errors import DicomError
from apps.dicom.peers import DicomWebEndpoint, LocalAE, RemoteAE
from apps.jobs.models import Job, JobItem
from apps.servers.windows import validate_windows


def validate_ae_title(value: str) -> None:
    """DICOM PS3.5: at most 16 characters of the default repertoire, no backslash or control chars,
    not only spaces."""
    if not value or not value.strip():
        raise ValidationError("AE title must not be empty.")
    if len(value) > 16:
        raise ValidationError(f"AE title '{value}' is {len(value)} characters long; DICOM allows at most 16.")
    bad = [c for c in value if c == "\\" or ord(c) < 32 or ord(c) > 126]
    if bad:
        raise ValidationError(f"AE title '{value}' contains {bad[0]!r}; use letters, digits, space, _ or -.")


_HOST_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
QUERY_TIMEOUT_MAX = 3600  # one C-FIND or C-ECHO; longer is a hung PACS, not a slow one
DOWNLOAD_TIMEOUT_MAX = 86400  # one C-MOVE/C-GET: a day, the job timeout's limit too


def _as_address(value: str):
    """The IP address `value` is, also in the forms the C library's resolver takes as one ('0', '4294967295',
    '0x7f.1'), which a connect() would reach; None for a host name."""
    try:
        return ipaddress.ip_address(value)
    except ValueError:
        pass
    if re.fullmatch(r"[0-9][0-9a-fA-FxX.]*", value):
        try:
            return ipaddress.IPv4Address(socket.inet_aton(value))
        except OSError:
            return None
    return None


def _not_unicast(address) -> str:
    """Why an address cannot be one PACS: every host, nobody, or a group (an association needs one peer)."""
    address = getattr(address, "ipv4_mapped", None) or address
    if address.is_unspecified:
        return "is the unspecified address (every interface of this machine, not a PACS)"
    if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
        return "is a broadcast address"
    if address.is_multicast:
        return "is a multicast address"
    if address.version == 4 and address.is_reserved:
        return "is a reserved address (240.0.0.0/4)"
    return ""


def validate_host(value: str) -> None:
    """A host name (letters, digits, '-' and dots) or an IPv4/IPv6 address: no scheme, port, path or spaces."""
    if "://" in value:
        raise ValidationError(f"Host '{value}' has a scheme; give only the host name or address, e.g. pacs.local.")
    if not value or any(c.isspace() for c in value):
        raise ValidationError(f"Host '{value}' must be one host name or address, without spaces.")
    address = _as_address(value)
    if address is not None:
        problem = _not_unicast(address)
        if problem:
            raise ValidationError(f"Host '{value}' {problem}; give the PACS's own address or name.")
        return
    labels = value[:-1].split(".") if value.endswith(".") else value.split(".")
    if len(value) > 253 or not all(_HOST_LABEL.match(label) for label in labels):
        raise ValidationError(f"Host '{value}' is not a host name or IP address (letters, digits, '-' and "
                              "dots, e.g. pacs.hospital.local or 10.0.0.5).")


STORE_FROM_MAX = 32


def parse_store_from(entry: str) -> tuple[str, str]:
    """One `store_from` entry, `AE_TITLE@host`, as (AE title, host); ValidationError naming it if malformed."""
    if not isinstance(entry, str) or entry.count("@") != 1:
        raise ValidationError(f"Store-from entry {entry!r} must be AE_TITLE@host, e.g. ORTHANC2@10.0.0.6.")
    ae_title, host = entry.split("@")
    try:
        validate_ae_title(ae_title)
        validate_host(host)
    except ValidationError as exc:
        raise ValidationError(f"Store-from entry {entry!r}: {exc.messages[0]}") from None
    return ae_title, host


def validate_store_from(value) -> None:
    if not isinstance(value, list):
        raise ValidationError("Store-from must be a list of AE_TITLE@host entries.")
    if len(value) > STORE_FROM_MAX:
        raise ValidationError(f"Store-from lists {len(value)} nodes; at most {STORE_FROM_MAX}.")
    for entry in value:
        parse_store_from(entry)


server_name_validator = RegexValidator(
    r"^[A-Za-z0-9_-]{1,32}$", "Use 1 to 32 letters, digits, '_' or '-' (it names folders and URLs)."
)


RESERVED_NAMES = {"received"}  # DOWNLOADS_DIR/received/ holds what other portals upload, by account


def reserved_name_problem(name: str) -> str | None:
    if name.lower() in RESERVED_NAMES:
        return (f"'{name}' is reserved: DOWNLOADS_DIR/{name}/ holds the files other portals upload, and a "
                "server's retrievals must never land among them.")
    return None


class ServerAccessDenied(PermissionDenied):
    """This user may not query, retrieve from or send to this server (answered as 403 with the message)."""


ACCESS_VERBS = {"query": "query", "retrieve": "retrieve from", "send": "send to"}


class DicomServer(models.Model):
    class RetrieveMethod(models.TextChoices):
        C_MOVE = "c-move", "C-MOVE (the PACS sends to our receiver)"
        C_GET = "c-get", "C-GET (images come back on our own association)"

    class WebAuth(models.TextChoices):
        NONE = "none", "None"
        BASIC = "basic", "HTTP Basic"
        BEARER = "bearer", "Bearer token"

    name = models.CharField(max_length=32, unique=True, validators=[server_name_validator],
                            help_text="Short name used in case lists and folders, e.g. LK.")
    ae_title = models.CharField("AE title", max_length=16, validators=[validate_ae_title])
    host = models.CharField(max_length=255, validators=[validate_host])
    port = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(65535)])
    description = models.CharField(max_length=200, blank=True)
    query_timeout = models.PositiveIntegerField(default=30, validators=[MinValueValidator(1),
                                                                    MaxValueValidator(QUERY_TIMEOUT_MAX)],
                                                help_text="Seconds one C-FIND or C-ECHO may take.")
    download_timeout = models.PositiveIntegerField(default=120, validators=[MinValueValidator(1),
                                                                        MaxValueValidator(DOWNLOAD_TIMEOUT_MAX)],
                                                   help_text="Seconds one C-MOVE/C-GET may take.")
    retries = models.PositiveSmallIntegerField(default=2, validators=[MaxValueValidator(10)],
                                               help_text="Extra attempts after a connection failure.")
    retrieve_method = models.CharField(max_length=8, choices=RetrieveMethod.choices, default=RetrieveMethod.C_MOVE)
    max_associations = models.PositiveSmallIntegerField(
        default=2, validators=[MinValueValidator(1), MaxValueValidator(64)],
        help_text="Most associations the portal opens to this server at once, across all workers.")
    store_from = models.JSONField(
        "also stores from", default=list, blank=True, validators=[validate_store_from],
        help_text="Further nodes (a clustered PACS) whose C-STOREs answer this server's C-MOVEs, as a list of "
                  "AE_TITLE@host. The receiver keeps a moved instance only from this server's own AE title and "
                  "host, or from one of these.")
    tls_enabled = models.BooleanField("TLS", default=False)
    tls_ca_file = models.CharField("TLS CA file", max_length=500, blank=True)
    tls_cert_file = models.CharField("TLS client certificate", max_length=500, blank=True)
    tls_key_file = models.CharField("TLS client key", max_length=500, blank=True)
    dicomweb_url = models.URLField("DICOMweb base URL", blank=True, help_text="e.g. https://pacs:8042/dicom-web (http or a loopback "
                                   "address only for hosts in TRUSTED_HTTP_HOSTS)")
    dicomweb_auth = models.CharField(max_length=8, choices=WebAuth.choices, default=WebAuth.NONE)
    dicomweb_username = models.CharField(max_length=150, blank=True)
    dicomweb_secret = models.CharField("DICOMweb password or token", max_length=500, blank=True)
    # Who may use the server (on top of the permissions "query server", "start retrieval", ...).
    open_to_everyone = models.BooleanField(
        default=True, help_text="Every user with the permission may query, retrieve from and send to this "
                                "server. Turn off to allow only the groups named below.")
    query_groups = models.ManyToManyField(Group, blank=True, related_name="+",
                                          help_text="Groups that may query (C-FIND) this server.")
    retrieve_groups = models.ManyToManyField(Group, blank=True, related_name="+",
                                             help_text="Groups that may retrieve studies from this server.")
    send_groups = models.ManyToManyField(Group, blank=True, related_name="+",
                                         help_text="Groups that may send images to this server.")
    paused = models.BooleanField(default=False, help_text="Start no new work with this server (what runs "
                                                          "finishes its item); clear to continue.")
    windows = models.JSONField(default=list, blank=True, validators=[validate_windows],
                               help_text='When the portal may work with it, e.g. [{"direction": "retrieve", '
                                         '"days": "mon,tue,wed,thu,fri", "start": "20:00", "end": "07:00"}] '
                                         "(the portal's time zone; a direction without windows is always open).")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        verbose_name = "DICOM server"
        permissions = [("query_server", "Can query servers (C-FIND)"),
                       ("query_without_filter", "Can query servers without a patient, date or accession filter")]
        constraints = [models.UniqueConstraint(
            Lower("name"), name="servers_dicomserver_name_ci_unique",
            violation_error_message="A server with this name already exists (names are compared without "
                                    "regard to case: 'orth' and 'ORTH' are the same server).")]

    def __str__(self) -> str:
        return f"{self.name} ({self.ae_title}@{self.host}:{self.port})"

    def clean(self):
        if reserved_name_problem(self.name or ""):
            raise ValidationError({"name": reserved_name_problem(self.name)})
        if self.tls_enabled and not self.tls_ca_file:
            raise ValidationError({"tls_ca_file": "TLS needs the CA file that signed the server's certificate."})
        if self.dicomweb_auth != self.WebAuth.NONE and not self.dicomweb_secret:
            raise ValidationError({"dicomweb_secret": "This authentication needs a password or token (a changed "
                                                      "DICOMweb URL drops the stored one: type it again)."})

    @classmethod
    def name_clash(cls, name: str, *, exclude_pk=None) -> "DicomServer | None":
        """The server whose name equals `name` without regard to case, if any (other than exclude_pk)."""
        return cls.objects.filter(name__iexact=name).exclude(pk=exclude_pk).first()

    def store_sources(self) -> list[tuple[str, str]]:
        """(AE title, host) of every node whose C-STOREs answer this server's C-MOVEs: itself first. An entry
        stored malformed (past the validation, by hand) names no node: nothing is kept from it."""
        sources = [(self.ae_title, self.host)]
        for entry in self.store_from if isinstance(self.store_from, list) else []:
            try:
                sources.append(parse_store_from(entry))
            except ValidationError:
                continue
        return sources

    def may(self, user, action: str) -> bool:
        """Whether the user may "query", "retrieve" or "send" here. None is the portal itself (command line,
        watched inboxes): it acts for the operator who configured it."""
        if action not in ACCESS_VERBS:
            raise ValueError(f"unknown server access {action!r}; use one of {', '.join(ACCESS_VERBS)}")
        if user is None or user.is_superuser or self.open_to_everyone:
            return True
        groups = getattr(self, f"{action}_groups")
        return user.is_authenticated and groups.filter(pk__in=user.groups.values("pk")).exists()

    def check_access(self, user, action: str) -> None:
        """Raise ServerAccessDenied (a 403 with this message) unless the user may `action` this server."""
        if not self.may(user, action):
            raise ServerAccessDenied(self.refusal(action))

    def may_use(self, user) -> bool:
        """Whether the user may query, retrieve from or send to this server."""
        return any(self.may(user, action) for action in ACCESS_VERBS)

    def check_any_access(self, user) -> None:
        """For what serves every use (a C-ECHO): the user must be allowed to query, retrieve from or send to
        this server; ServerAccessDenied otherwise."""
        if not self.may_use(user):
            raise ServerAccessDenied(f"You may not use server '{self.name}': it is open only to its query, "
                                     "retrieve and send groups. Ask an administrator to add you to one of them.")

    def refusal(self, action: str) -> str:
        return (f"You may not {ACCESS_VERBS[action]} server '{self.name}': it is open only to its {action} "
                f"groups. Ask an administrator to add you to one of them.")

    def as_peer(self, *, query_timeout: float | None = None, retrieve_timeout: float | None = None) -> RemoteAE:
        """The plain peer the DICOM layer works with (it knows no models)."""
        return RemoteAE(
            ae_title=self.ae_title, host=self.host, port=self.port, name=self.name,
            # clamped: rows saved before the limits existed may hold values no socket accepts
            query_timeout=float(min(query_timeout or self.query_timeout, QUERY_TIMEOUT_MAX)),
            retrieve_timeout=float(min(retrieve_timeout or self.download_timeout, DOWNLOAD_TIMEOUT_MAX)),
            tls_ca=self.tls_ca_file if self.tls_enabled else None,
            tls_cert=(self.tls_cert_file or None) if self.tls_enabled else None,
            tls_key=(self.tls_key_file or None) if self.tls_enabled else None,
        )

    def echo(self) -> dict:
        """C-ECHO this server: {"ok", "elapsed_ms", "error"} for the API and the admin."""
        try:
            elapsed = self.echo_ms()
        except DicomError as exc:
            return {"ok": False, "elapsed_ms": None, "error": str(exc)}
        return {"ok": True, "elapsed_ms": round(elapsed, 1), "error": None}

    def echo_ms(self) -> float:
        """C-ECHO this server and return the milliseconds it took; a DicomError says why it failed (the
        echo job's item lets the runner judge it: retried, failed or timed out)."""
        return dimse.echo(self.as_peer(), local_ae())

    def as_dicomweb(self) -> DicomWebEndpoint | None:
        if not self.dicomweb_url:
            return None
        return DicomWebEndpoint(
            base_url=self.dicomweb_url, auth=self.dicomweb_auth, name=self.name,
            username=self.dicomweb_username,
            password=self.dicomweb_secret if self.dicomweb_auth == self.WebAuth.BASIC else "",
            token=self.dicomweb_secret if self.dicomweb_auth == self.WebAuth.BEARER else "",
        )


def local_ae() -> LocalAE:
    """The portal's own AE: title and the receiver's address, from settings (DICOM_AE_TITLE, DICOM_PORT)."""
    return LocalAE(ae_title=settings.DICOM_AE_TITLE, host=settings.DICOM_HOST, port=settings.DICOM_PORT)


class EchoJob(Job):
    """C-ECHO every configured server, one item per server: the servers' own job, which also exercises
    the runner end to end."""

    class Meta(Job.Meta):
        verbose_name = "echo job"


class EchoItem(JobItem):
    job = models.ForeignKey(EchoJob, on_delete=models.CASCADE, related_name="items")
    dicom_server = models.ForeignKey(DicomServer, null=True, on_delete=models.SET_NULL, related_name="+")
    server_name = models.CharField(max_length=32, help_text="Kept so the item still reads well if the server goes.")

    class Meta(JobItem.Meta):
        verbose_name = "echo item"

    @classmethod
    def instances_finished(cls, since) -> list[tuple]:
        return []  # an echo moves no instance

    def server(self):
        return self.dicom_server
