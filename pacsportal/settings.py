"""PACS Portal settings: one file, driven by environment variables (and an optional .env file).

See README.md "Configuration" for every variable. Defaults give a working single-machine install:
SQLite (WAL) in DATA_DIR, the django-q2 ORM broker, the receiver on DICOM_PORT.
"""
import os
from datetime import timedelta
from pathlib import Path

import environ

BASE_DIR = Path(__file__).resolve().parent.parent
env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env("SECRET_KEY", default="dev-only-insecure-key" if DEBUG else None)
if not SECRET_KEY:
    from django.core.exceptions import ImproperlyConfigured

    raise ImproperlyConfigured("SECRET_KEY must be set (or DEBUG=1 for a development machine).")
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

DATA_DIR = Path(env("DATA_DIR", default=str(BASE_DIR / "data"))).resolve()
DATA_DIR.mkdir(parents=True, exist_ok=True)
PORT = env.int("PORT", default=8000)

# --- DICOM -------------------------------------------------------------------------------------
DICOM_AE_TITLE = env("DICOM_AE_TITLE", default="PACSPORTAL")
DICOM_HOST = env("DICOM_HOST", default="127.0.0.1")  # address the receiver binds and PACSs move to
DICOM_PORT = env.int("DICOM_PORT", default=11112)
STAGING_DIR = Path(env("STAGING_DIR", default=str(DATA_DIR / "staging")))
DOWNLOADS_DIR = Path(env("DOWNLOADS_DIR", default=str(DATA_DIR / "downloads")))
PHOTOS_DIR = Path(env("PHOTOS_DIR", default=str(DATA_DIR / "photos")))  # photos waiting for the PACS
# Pixels, read from each photo's header before it is decoded: per photo (48 MP phone cameras pass), per upload,
# and decoded at once by one web process (photos wait for room: memory stays bounded, apps/photos/budget.py).
PHOTO_MAX_PIXELS = env.int("PHOTO_MAX_PIXELS", default=50_000_000)
PHOTO_MAX_TOTAL_PIXELS = env.int("PHOTO_MAX_TOTAL_PIXELS", default=400_000_000)
PHOTO_DECODE_PIXELS = env.int("PHOTO_DECODE_PIXELS", default=PHOTO_MAX_PIXELS)
# The receiver keeps C-STOREs only from the AE titles of configured servers (plus these), only for moves in
# flight; plain C-STOREs are refused unless a quota (MB) is set, then kept for RECEIVER_UNSOLICITED_DAYS.
RECEIVER_ALLOWED_AE_TITLES = env.list("RECEIVER_ALLOWED_AE_TITLES", default=[])
RECEIVER_KEEP_UNSOLICITED_MB = env.int("RECEIVER_KEEP_UNSOLICITED_MB", default=0)
RECEIVER_UNSOLICITED_DAYS = env.int("RECEIVER_UNSOLICITED_DAYS", default=7)
QUARANTINE_DIR = Path(env("QUARANTINE_DIR", default=str(DATA_DIR / "quarantine")))
# What peers may cost the receiver: associations at once (one more is refused, "local limit exceeded"),
# seconds of silence between PDUs, seconds any wait inside a PDU may last (a PDU taking longer is cut).
RECEIVER_MAX_ASSOCIATIONS = env.int("RECEIVER_MAX_ASSOCIATIONS", default=32)
# Processes serving the receiver's port: series moved in parallel need more than one.
RECEIVER_PROCESSES = env.int("RECEIVER_PROCESSES", default=min(4, os.cpu_count() or 1))
RECEIVER_IDLE_TIMEOUT = env.float("RECEIVER_IDLE_TIMEOUT", default=300.0)
# Seconds a connection may stay silent before its association request, or an association before it sent an
# instance of a live move: an association holding a slot for nothing is cut this soon.
RECEIVER_QUIET_TIMEOUT = env.float("RECEIVER_QUIET_TIMEOUT", default=10.0)
# Associations at once from one address that is no configured server's (a server's may use every slot).
RECEIVER_PEER_ASSOCIATIONS = env.int("RECEIVER_PEER_ASSOCIATIONS", default=max(1, RECEIVER_MAX_ASSOCIATIONS // 4))
# A peer address answered "not authorized" more often than this is cut off for RECEIVER_CUT_OFF_SECONDS.
RECEIVER_REFUSALS_ALLOWED = env.int("RECEIVER_REFUSALS_ALLOWED", default=5)
RECEIVER_CUT_OFF_SECONDS = env.float("RECEIVER_CUT_OFF_SECONDS", default=600.0)
RECEIVER_PDU_TIMEOUT = env.float("RECEIVER_PDU_TIMEOUT", default=60.0)
# A case list with more rows than this has its rows created in the background ("preparing").
RETRIEVAL_INLINE_ROWS = env.int("RETRIEVAL_INLINE_ROWS", default=200)
IMPORT_ROOTS = [Path(p).resolve() for p in env.list("IMPORT_ROOTS", default=[])]
IMPORT_JPG_DIR = Path(env("IMPORT_JPG_DIR", default=str(DATA_DIR / "imports")))
IMPORT_BATCH_SIZE = env.int("IMPORT_BATCH_SIZE", default=250)  # files per import item
IMPORT_PROCESSES = env.int("IMPORT_PROCESSES", default=os.cpu_count() or 1)  # decoders per import item
INBOX_POLL_SECONDS = env.float("INBOX_POLL_SECONDS", default=2.0)  # watched inboxes: seconds between passes
INBOX_WATCH_MODE = env("INBOX_WATCH_MODE", default="auto")  # auto | inotify | polling (network shares)
# Delivery: folder targets must lie in DELIVERY_ROOTS (or IMPORT_ROOTS); the tus receiving end keeps
# partial uploads in UPLOADS_DIR until they complete or expire.
DELIVERY_ROOTS = [Path(p).resolve() for p in env.list("DELIVERY_ROOTS", default=[])]
DELIVERY_ZIP_DIR = Path(env("DELIVERY_ZIP_DIR", default=str(DATA_DIR / "delivery-zips")))
DELIVERY_ZIP_CLEANUP_HOURS = env.float("DELIVERY_ZIP_CLEANUP_HOURS", default=24)
DELIVERY_CHUNK_BYTES = env.int("DELIVERY_CHUNK_MB", default=16) * 1024 * 1024
DELIVERY_STOW_BATCH = env.int("DELIVERY_STOW_BATCH", default=50)
DELIVERY_PARALLEL_COPIES = env.int("DELIVERY_PARALLEL_COPIES", default=4)  # direct mode to a folder: files at once
DELIVERY_RETRIES = env.int("DELIVERY_RETRIES", default=6)  # per upload, backoff doubling from 0.5 s
DELIVERY_BACKOFF_SECONDS = env.float("DELIVERY_BACKOFF_SECONDS", default=0.5)
UPLOADS_DIR = Path(env("UPLOADS_DIR", default=str(DATA_DIR / "uploads")))
UPLOAD_MAX_BYTES = env.int("UPLOAD_MAX_GB", default=20) * 1024 ** 3
UPLOAD_MAX_UNPACKED_BYTES = 2 * UPLOAD_MAX_BYTES
# A received zip may unpack to at most this many times its own size, and no entry (over 64 kB) to more
# than UPLOAD_MAX_ENTRY_RATIO times its compressed size: a zip bomb fails and writes nothing.
UPLOAD_MAX_UNPACK_FACTOR = env.float("UPLOAD_MAX_UNPACK_FACTOR", default=5)
UPLOAD_MAX_ENTRY_RATIO = env.float("UPLOAD_MAX_ENTRY_RATIO", default=100)
# Delivery targets and DICOMweb URLs must be https and not loopback/link-local, unless their host (or
# host:port) is listed here (apps/servers/outbound.py).
TRUSTED_HTTP_HOSTS = env.list("TRUSTED_HTTP_HOSTS", default=[])
UPLOAD_EXPIRE_HOURS = env.float("UPLOAD_EXPIRE_HOURS", default=24)
DEMO_PACS = env.bool("DEMO_PACS", default=True)
# Disk floors (apps/jobs/diskspace.py): below MIN_FREE_GB free (GB = 10**9 bytes) on a data folder, work
# writing there waits and the receiver refuses new moves; MIN_FREE_GB_<FOLDER> overrides it for one folder
# (DOWNLOADS, STAGING, UPLOADS, PHOTOS, IMPORTS); 0 turns a floor off.
MIN_FREE_GB = env.float("MIN_FREE_GB", default=1.0)
MIN_FREE_GB_BY_FOLDER = {name: env.float(f"MIN_FREE_GB_{name.upper()}")
                         for name in ("downloads", "staging", "uploads", "photos", "imports")
                         if f"MIN_FREE_GB_{name.upper()}" in os.environ}
# Retention (apps/core/retention/, `manage.py retention [--dry-run]`, daily): days kept; 0 keeps for ever.
RETENTION_INBOX_ARCHIVE_DAYS = env.int("RETENTION_INBOX_ARCHIVE_DAYS", default=90)
RETENTION_QUARANTINE_DAYS = env.int("RETENTION_QUARANTINE_DAYS", default=30)
RETENTION_DELIVERED_DAYS = env.int("RETENTION_DELIVERED_DAYS", default=30)  # downloads once delivered
RETENTION_REPORTS_DAYS = env.int("RETENTION_REPORTS_DAYS", default=90)
RETENTION_JOBS_DAYS = env.int("RETENTION_JOBS_DAYS", default=365)  # finished job records
RETENTION_DELETE_BATCH = env.int("RETENTION_DELETE_BATCH", default=500)  # item rows per DELETE transaction
# DICOMweb (/dicomweb/): a STOW-RS body larger than this is refused (413) before it is read; a QIDO answer
# holds at most DICOMWEB_QIDO_LIMIT matches per request (limit/offset page through the rest).
DICOMWEB_STOW_MAX_BYTES = env.int("DICOMWEB_STOW_MAX_MB", default=2048) * 1024 * 1024
DICOMWEB_QIDO_LIMIT = env.int("DICOMWEB_QIDO_LIMIT", default=1000)
DEMO_PACS_PORT = env.int("DEMO_PACS_PORT", default=11120)

# --- Django --------------------------------------------------------------------------------------
INSTALLED_APPS = [
    "apps.core.admin_site.PortalAdminConfig",  # django.contrib.admin with the portal's site
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_q",
    "axes",
    "auditlog",
    "apps.core",
    "apps.audit",
    "apps.notify",
    "apps.servers",
    "apps.jobs",
    "apps.retrieval",
    "apps.imports",
    "apps.photos",
    "apps.sending",
    "apps.delivery",
    "apps.projects",
    "apps.catalog",
    "apps.dicomweb",
    "apps.viewer",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "pacsportal.errors.RefuseChunkedBodies",  # before anything reads a body it cannot read
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "auditlog.middleware.AuditlogMiddleware",
    "pacsportal.authentication.AuditClientAddressMiddleware",  # auditlog would trust a forged X-Forwarded-For
    "axes.middleware.AxesMiddleware",  # answers a locked-out login with 429
]
# The lockout (django-axes) first: it refuses a locked-out client before any password is checked.
AUTHENTICATION_BACKENDS = ["pacsportal.authentication.LockoutBackend", "django.contrib.auth.backends.ModelBackend"]

ROOT_URLCONF = "pacsportal.urls"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]
WSGI_APPLICATION = "pacsportal.wsgi.application"

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{DATA_DIR / 'portal.sqlite3'}")}
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Several worker processes share one SQLite file: WAL lets readers run beside the writer,
    # IMMEDIATE takes the write lock at BEGIN (no deadlocking lock upgrades), and a long busy
    # timeout makes a writer wait instead of failing with "database is locked".
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        {
            "timeout": 60,
            "transaction_mode": "IMMEDIATE",
            "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=60000;",
        }
    )
    # Tests use a file (not :memory:) so worker subprocesses (qcluster) share the test database;
    # the pid keeps two test runs in one checkout apart.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / f"test-{os.getpid()}.sqlite3")}
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", 60)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = env("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "static"
STATIC_ROOT.mkdir(exist_ok=True)  # whitenoise warns on every request when it is missing
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
LOGIN_URL = "/admin/login/"
# The OHIF viewer's files, laid out by `make viewer` (apps/viewer/site.py); served at /viewer/.
VIEWER_ROOT = Path(env("VIEWER_ROOT", default=str(BASE_DIR / "vendor" / "viewer" / "site"))).resolve()
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=50 * 1024 * 1024)

# --- Security (production defaults; `manage.py check --deploy` is clean with DEBUG off) ---------
SECURE_SSL = env.bool("SECURE_SSL", default=not DEBUG)
SESSION_COOKIE_SECURE = CSRF_COOKIE_SECURE = SECURE_SSL
SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=False)  # usually the proxy's job
SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000 if SECURE_SSL else 0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = SECURE_HSTS_PRELOAD = SECURE_SSL
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SILENCED_SYSTEM_CHECKS = env.list("SILENCED_SYSTEM_CHECKS", default=[])
if not SECURE_SSL_REDIRECT:
    # TLS is terminated by the reverse proxy in front of the portal (README, "Production").
    SILENCED_SYSTEM_CHECKS.append("security.W008")

# --- Access: lockout after failed logins and bad API tokens (django-axes), API rates ---------------
# Counted per (account, address) pair, so a guesser sharing an address with others (a NAT, a proxy) locks only
# the account guessed, from there; unknown account names and bad API tokens count per address, as one
# pseudo-account each ("(unknown account)", "(API token)"), with a higher limit (pacsportal/authentication.py).
LOGIN_FAILURE_LIMIT = env.int("LOGIN_FAILURE_LIMIT", default=10)
LOGIN_ADDRESS_FAILURE_LIMIT = env.int("LOGIN_ADDRESS_FAILURE_LIMIT", default=50)
AXES_FAILURE_LIMIT = "pacsportal.authentication.failure_limit"
AXES_USERNAME_CALLABLE = "pacsportal.authentication.lockout_username"
AXES_COOLOFF_TIME = timedelta(minutes=env.float("LOGIN_LOCKOUT_MINUTES", default=15))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = False  # failures expire with the cool-off; another account's login must not clear them
# Behind a reverse proxy every request comes from the proxy: with BEHIND_PROXY=1 the client is the address the
# proxy appended to X-Forwarded-For (never an address the client wrote there itself).
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
AXES_CLIENT_IP_CALLABLE = "pacsportal.authentication.client_address"
AXES_SENSITIVE_PARAMETERS = ["password", "token", "username", "csrfmiddlewaretoken"]  # a typed-in password, too

# --- API -----------------------------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "pacsportal.authentication.AuditedTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["pacsportal.permissions.ModelPermissions"],
    "EXCEPTION_HANDLER": "pacsportal.permissions.api_exception_handler",
    # Requests per signed-in user; bad tokens are counted by django-axes before any throttle runs.
    "DEFAULT_THROTTLE_CLASSES": ["rest_framework.throttling.UserRateThrottle"],
    "DEFAULT_THROTTLE_RATES": {"user": env("API_RATE_USER", default="1200/min"),
                               "uploads": env("UPLOAD_RATE_USER", default="20000/min"),  # tus: a request per chunk
                               "dicomweb": env("DICOMWEB_RATE_USER", default="20000/min")},  # a viewer: per frame
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}
# A study query answers at most this many studies, with a "more results than shown" message beyond.
QUERY_MAX_RESULTS = env.int("QUERY_MAX_RESULTS", default=500)
SPECTACULAR_SETTINGS = {
    "TITLE": "PACS Portal API",
    "DESCRIPTION": "Move DICOM images between PACS servers, folders, phones and people.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    # Swagger UI and ReDoc from the portal's own static files (drf-spectacular-sidecar): no CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # Every app's job and item have a "status" field; name the two shared choice sets once.
    "ENUM_NAME_OVERRIDES": {"JobStatusEnum": "apps.jobs.models.JobStatus",
                            "ItemStatusEnum": "apps.jobs.models.ItemStatus",
                            # two fields named "mode": a retrieval's (retrieve or query) and a delivery's
                            "RetrievalModeEnum": "apps.retrieval.models.RetrievalJob.Mode",
                            "DeliveryModeEnum": "apps.delivery.models.DeliveryJob.Mode"},
}

# --- Jobs (django-q2) ----------------------------------------------------------------------------
Q_BROKER = env("Q_BROKER", default="orm")
Q_CLUSTER = {
    "name": "pacsportal",
    "workers": env.int("Q_WORKERS", default=2),
    "timeout": env.int("Q_TIMEOUT", default=3600),
    "retry": env.int("Q_TIMEOUT", default=3600) + 60,
    "max_attempts": 1,  # our runner re-queues items itself; django-q must not replay them
    "ack_failures": True,
    "catch_up": False,
    # An idle cluster looks at the ORM broker this often: a job starts on average half of it after it is
    # queued. 0.1 s (not django-q's 0.2) for sub-second jobs; one cheap query each (Redis blocks instead).
    "poll": env.float("Q_POLL", default=0.1),
    "save_limit": 500,
    "label": "Task queue",
}
if Q_BROKER == "orm":
    Q_CLUSTER["orm"] = "default"
else:
    Q_CLUSTER["redis"] = Q_BROKER
JOB_LEASE_SECONDS = env.int("JOB_LEASE_SECONDS", default=60)
# /healthz reports a worker whose item has run longer than this though its heartbeat is alive (blocked in
# one item); 0 turns the check off. Far above any item's own timeouts.
JOB_STUCK_SECONDS = env.int("JOB_STUCK_SECONDS", default=6 * 3600)
# A worker runs item after item of one job; after this long it gives the worker to other waiting jobs.
JOB_SLICE_SECONDS = env.float("JOB_SLICE_SECONDS", default=2.0)
# A worker claims as many of a job's items at once as its recent ones did in this long (apps/jobs/batch.py).
# Each batch costs a claim, a load and a write of outcomes; a worker still looks around after every item once
# its slice is over, so a longer batch delays no other job.
JOB_BATCH_SECONDS = env.float("JOB_BATCH_SECONDS", default=0.5)
JOB_STATUS_SECONDS = 1.0  # a busy worker derives its job's status at most this often (and when it stops)

# --- E-mail: job-end messages and operator alerts (apps/notify) -----------------------------------
# EMAIL_URL: smtp://user:pass@host:587 (smtp+tls://, smtp+ssl://), consolemail:// (printed), dummymail:// (dropped).
# Default: printed to the console under DEBUG; otherwise the host's own mail server on localhost:25, which
# relays only what its administrator allows (nothing leaves the machine on its own).
vars().update(env.email_url("EMAIL_URL", default="consolemail://" if DEBUG else "smtp://localhost:25"))
DEFAULT_FROM_EMAIL = env("DEFAULT_FROM_EMAIL", default="pacs-portal@localhost")
EMAIL_TIMEOUT = env.float("EMAIL_TIMEOUT", default=10.0)  # a hung mail server must not hold a worker
# The portal's address as users reach it, for links in e-mails.
PORTAL_URL = env("PORTAL_URL", default=f"http://localhost:{PORT}").rstrip("/")
OPERATOR_ALERT_SECONDS = env.int("OPERATOR_ALERT_SECONDS", default=3600)  # one message per cause this often
# /metrics for a monitoring system: `Authorization: Bearer <METRICS_TOKEN>` (empty: staff logins only).
METRICS_TOKEN = env("METRICS_TOKEN", default="")

# --- Logging: one line per event; patient data only at DEBUG (see apps/jobs/logging notes) -------
LOG_LEVEL = env("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"line": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "line"}},
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "pynetdicom": {"level": "WARNING"},
        # httpx logs whole URLs at INFO, and a QIDO URL carries PatientID: keep it at WARNING.
        "httpx": {"level": "WARNING"},
        "httpcore": {"level": "WARNING"},
        "django-q": {"level": env("Q_LOG_LEVEL", default="WARNING")},  # django-q2 logs as "django-q"
        "axes": {"level": "WARNING"},  # WARNING still reports every lockout
    },
}
