"""Every route of the URL conf, with four callers: anonymous, a plain user (no permission), a staff user
without permissions, and a user holding exactly the permissions the route's rule names. The routes are
read from the URL conf: a new API route, or a new custom admin view, without a rule in RULES fails here,
and so does a rule whose route is gone."""
from dataclasses import dataclass, field

import pytest
from django.contrib.auth.models import Permission
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from apps.imports.models import ImportedImage, ImportedPatient, ImportJob
from apps.photos.models import PhotoSend, PhotoUpload
from apps.projects.models import Project
from apps.retrieval.models import RetrievalItem, RetrievalJob
from apps.sending.models import Inbox, SendItem, SendJob
from apps.servers.intake import create_echo_job
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db

OPEN, LOGIN, STAFF = "open", "login", "staff"  # rules that are not permissions


@dataclass(frozen=True)
class Rule:
    url: str  # with {server}, {echo}, {retrieval}, {photo} filled from the objects made for the test
    needs: str | tuple[str, ...]  # OPEN, LOGIN, STAFF, or the permissions
    ok: int  # the status the permitted caller gets (a 400 for an empty body still proves it got in)
    body: dict = field(default_factory=dict)
    staff: bool = False  # the permissions are needed by a staff account (the photo settings' PUT)


RETRIEVAL_VIEW = ("retrieval.view_retrievaljob",)
SEND_VIEW = ("sending.view_sendjob",)
INBOX_VIEW = ("sending.view_inbox",)
ECHO_VIEW = ("servers.view_echojob",)
PHOTO_VIEW = ("photos.view_photoupload",)
DELIVERY_VIEW = ("delivery.view_deliveryjob",)
UPLOAD = ("delivery.add_upload",)
NO_UPLOAD = "6f1c1f8e-0000-4000-8000-000000000000"
IMPORT_VIEW = ("imports.view_importjob",)
PSEUDONYM_MAP = ("projects.view_project", "projects.view_pseudonym_map")
RULES = {
    ("healthz", "GET"): Rule("/healthz", OPEN, 200),
    ("metrics", "GET"): Rule("/metrics", STAFF, 200),
    ("dashboard", "GET"): Rule("/admin/dashboard.json", STAFF, 200),  # the admin home page's figures
    ("my-notifications", "GET"): Rule("/api/me/notifications", LOGIN, 200),
    ("my-notifications", "PUT"): Rule("/api/me/notifications", LOGIN, 400),
    ("my-notifications", "PATCH"): Rule("/api/me/notifications", LOGIN, 400),
    ("schema", "GET"): Rule("/api/schema/", LOGIN, 200),
    ("swagger-ui", "GET"): Rule("/api/docs/", LOGIN, 200),
    # The viewer: its page, files and configuration for any account that logged in (the study data it shows
    # comes through /dicomweb/, which answers each account with its own studies only).
    ("viewer", "GET"): Rule("/viewer/", LOGIN, 200),
    ("viewer-file", "GET"): Rule("/viewer/viewer", LOGIN, 200),
    ("viewer-config", "GET"): Rule("/viewer/app-config.js", LOGIN, 200),
    ("dicomserver-list", "GET"): Rule("/api/servers/", ("servers.view_dicomserver",), 200),
    ("dicomserver-list", "POST"): Rule("/api/servers/", ("servers.add_dicomserver",), 400),
    ("dicomserver-detail", "GET"): Rule("/api/servers/{server}/", ("servers.view_dicomserver",), 200),
    ("dicomserver-detail", "PUT"): Rule("/api/servers/{server}/", ("servers.change_dicomserver",), 400),
    ("dicomserver-detail", "PATCH"): Rule("/api/servers/{server}/", ("servers.change_dicomserver",), 200,
                                          {"description": "changed"}),
    ("dicomserver-detail", "DELETE"): Rule("/api/servers/SPARE/", ("servers.delete_dicomserver",), 204),
    ("dicomserver-echo", "POST"): Rule("/api/servers/{server}/echo/", ("servers.view_dicomserver",), 200),
    # Nothing listens on the server's port: a 502 means the query got past every check.
    ("dicomserver-studies", "GET"): Rule("/api/servers/{server}/studies?PatientID=P1", ("servers.query_server",), 502),
    ("job-progress", "GET"): Rule("/api/jobs/retrieval/retrievaljob/{retrieval}/progress", RETRIEVAL_VIEW, 200),
    ("echojob-list", "GET"): Rule("/api/echo-jobs/", ECHO_VIEW, 200),
    ("echojob-list", "POST"): Rule("/api/echo-jobs/", ("servers.add_echojob",), 201),
    ("echojob-detail", "GET"): Rule("/api/echo-jobs/{echo}/", ECHO_VIEW, 200),
    ("echojob-cancel", "POST"): Rule("/api/echo-jobs/{echo}/cancel/", ("servers.change_echojob",), 200),
    ("echojob-retry", "POST"): Rule("/api/echo-jobs/{echo}/retry/", ("servers.change_echojob",), 200),
    ("retrievaljob-list", "GET"): Rule("/api/retrievals/", RETRIEVAL_VIEW, 200),
    ("retrievaljob-list", "POST"): Rule("/api/retrievals/", ("retrieval.start_retrieval",), 400),
    ("retrievaljob-detail", "GET"): Rule("/api/retrievals/{retrieval}/", RETRIEVAL_VIEW, 200),
    ("retrievaljob-cancel", "POST"): Rule("/api/retrievals/{retrieval}/cancel/", ("retrieval.change_retrievaljob",),
                                          200),
    ("retrievaljob-retry", "POST"): Rule("/api/retrievals/{retrieval}/retry/", ("retrieval.change_retrievaljob",),
                                         200),
    ("retrievaljob-report", "GET"): Rule("/api/retrievals/{retrieval}/report", RETRIEVAL_VIEW, 200),
    ("retrievaljob-results", "GET"): Rule("/api/retrievals/{retrieval}/results", RETRIEVAL_VIEW, 200),
    # not a query job: a 400 proves the caller got past every check
    ("retrievaljob-retrieve-found", "POST"): Rule("/api/retrievals/{retrieval}/retrieve",
                                                  RETRIEVAL_VIEW + ("retrieval.start_retrieval",), 400),
    ("deliverytarget-list", "GET"): Rule("/api/delivery-targets/", ("delivery.view_deliverytarget",), 200),
    ("deliverytarget-list", "POST"): Rule("/api/delivery-targets/", ("delivery.add_deliverytarget",), 400),
    ("deliverytarget-detail", "GET"): Rule("/api/delivery-targets/{target}/", ("delivery.view_deliverytarget",), 200),
    ("deliverytarget-detail", "PUT"): Rule("/api/delivery-targets/{target}/", ("delivery.change_deliverytarget",),
                                           400),
    ("deliverytarget-detail", "PATCH"): Rule("/api/delivery-targets/{target}/", ("delivery.change_deliverytarget",),
                                             200, {"description": "changed"}),
    ("deliverytarget-detail", "DELETE"): Rule("/api/delivery-targets/SPAREBOX/", ("delivery.delete_deliverytarget",),
                                              204),
    ("deliveryjob-list", "GET"): Rule("/api/deliveries/", DELIVERY_VIEW, 200),
    ("deliveryjob-list", "POST"): Rule("/api/deliveries/", ("delivery.add_deliveryjob",), 400),
    ("deliveryjob-detail", "GET"): Rule("/api/deliveries/{delivery}/", DELIVERY_VIEW, 200),
    ("deliveryjob-cancel", "POST"): Rule("/api/deliveries/{delivery}/cancel/", ("delivery.change_deliveryjob",), 200),
    ("deliveryjob-retry", "POST"): Rule("/api/deliveries/{delivery}/retry/", ("delivery.change_deliveryjob",), 200),
    # The tus receiving end: past the checks, a request without Tus-Resumable is 412, an unknown upload 404.
    ("upload-collection", "POST"): Rule("/api/uploads/", UPLOAD, 412),
    ("upload-resource", "GET"): Rule(f"/api/uploads/{NO_UPLOAD}", UPLOAD, 404),
    ("upload-resource", "PATCH"): Rule(f"/api/uploads/{NO_UPLOAD}", UPLOAD, 412),
    ("upload-resource", "DELETE"): Rule(f"/api/uploads/{NO_UPLOAD}", UPLOAD, 412),
    # The admin's own views (Django's model views already follow the model permissions).
    ("admin:retrieval_upload", "GET"): Rule("/admin/retrieval/retrievaljob/upload/", ("retrieval.start_retrieval",),
                                            200),
    ("admin:retrieval_query", "GET"): Rule("/admin/retrieval/retrievaljob/query/", ("retrieval.start_retrieval",),
                                           200),
    ("admin:retrieval_report", "GET"): Rule("/admin/retrieval/retrievaljob/{retrieval}/report.csv", RETRIEVAL_VIEW,
                                            200),
    ("admin:retrieval_results", "GET"): Rule("/admin/retrieval/retrievaljob/{retrieval}/results.csv", RETRIEVAL_VIEW,
                                             200),
    ("admin:retrieval_caselist", "GET"): Rule("/admin/retrieval/retrievaljob/{retrieval}/caselist.csv", RETRIEVAL_VIEW,
                                              200),
    ("admin:retrieval_retrieve_found", "POST"): Rule("/admin/retrieval/retrievaljob/{retrieval}/retrieve-found/",
                                                     RETRIEVAL_VIEW + ("retrieval.start_retrieval",), 302),
    ("admin:servers_echojob_run", "POST"): Rule("/admin/servers/echojob/run/", ("servers.add_echojob",), 302),
    # Photos: the phone app's API (a JSON body to the multipart upload is a 415: it got past every check;
    # without a destination the echo is a 400), its upload history, and the phone page with its PWA files.
    ("photos-studies", "POST"): Rule("/api/studies", ("photos.send_photos",), 415),
    ("photos-echo", "POST"): Rule("/api/pacs/echo", ("photos.send_photos",), 400),
    ("photos-settings", "GET"): Rule("/api/settings", ("photos.view_photosettings",), 200),
    ("photos-settings", "PUT"): Rule("/api/settings", ("photos.change_photosettings",), 400, staff=True),
    ("photos-settings-info", "GET"): Rule("/api/settings/info", ("photos.send_photos",), 200),
    ("photoupload-list", "GET"): Rule("/api/photo-uploads/", PHOTO_VIEW, 200),
    ("photoupload-detail", "GET"): Rule("/api/photo-uploads/{photo}/", PHOTO_VIEW, 200),
    ("photoupload-cancel", "POST"): Rule("/api/photo-uploads/{photo}/cancel/", ("photos.change_photoupload",), 200),
    ("photoupload-retry", "POST"): Rule("/api/photo-uploads/{photo}/retry/", ("photos.change_photoupload",), 200),
    ("photos:page", "GET"): Rule("/photos/", ("photos.send_photos",), 200),
    ("photos:login", "GET"): Rule("/photos/login/", OPEN, 200),
    ("photos:logout", "POST"): Rule("/photos/logout/", OPEN, 302),
    ("photos:manifest", "GET"): Rule("/photos/manifest.webmanifest", OPEN, 200),
    ("photos:sw", "GET"): Rule("/photos/sw.js", OPEN, 200),
    ("sendjob-list", "GET"): Rule("/api/sends/", SEND_VIEW, 200),
    ("sendjob-list", "POST"): Rule("/api/sends/", ("sending.add_sendjob",), 400),
    ("sendjob-detail", "GET"): Rule("/api/sends/{send}/", SEND_VIEW, 200),
    ("sendjob-cancel", "POST"): Rule("/api/sends/{send}/cancel/", ("sending.change_sendjob",), 200),
    ("sendjob-retry", "POST"): Rule("/api/sends/{send}/retry/", ("sending.change_sendjob",), 200),
    ("sendjob-report", "GET"): Rule("/api/sends/{send}/report", SEND_VIEW, 200),
    ("inbox-list", "GET"): Rule("/api/inboxes/", INBOX_VIEW, 200),
    ("inbox-list", "POST"): Rule("/api/inboxes/", ("sending.add_inbox",), 400, staff=True),
    ("inbox-detail", "GET"): Rule("/api/inboxes/{inbox}/", INBOX_VIEW, 200),
    ("inbox-detail", "PUT"): Rule("/api/inboxes/{inbox}/", ("sending.change_inbox",), 400, staff=True),
    # 400: no IMPORT_ROOTS are configured here, so the inbox's paths are refused (the change got past access)
    ("inbox-detail", "PATCH"): Rule("/api/inboxes/{inbox}/", ("sending.change_inbox",), 400, {"enabled": False},
                                    staff=True),
    ("inbox-detail", "DELETE"): Rule("/api/inboxes/{inbox}/", ("sending.delete_inbox",), 204, staff=True),
    ("inbox-runs", "GET"): Rule("/api/inboxes/{inbox}/runs/", INBOX_VIEW, 200),
    ("admin:sending_send", "GET"): Rule("/admin/sending/sendjob/send/", ("sending.add_sendjob",), 200),
    ("admin:sending_report", "GET"): Rule("/admin/sending/sendjob/{send}/report.csv", SEND_VIEW, 200),
    # Folder imports, by task_id; the 400 of an empty start body proves the caller got in.
    ("importjob-list", "GET"): Rule("/api/imports/", IMPORT_VIEW, 200),
    ("importjob-list", "POST"): Rule("/api/imports/", ("imports.start_import",), 400),
    ("importjob-detail", "GET"): Rule("/api/imports/{import}/", IMPORT_VIEW, 200),
    ("importjob-task-status", "GET"): Rule("/api/imports/{import}/status", IMPORT_VIEW, 200),
    ("importjob-stats", "GET"): Rule("/api/imports/{import}/stats", IMPORT_VIEW, 200),
    ("importjob-cancel", "POST"): Rule("/api/imports/{import}/cancel/", ("imports.change_importjob",), 200),
    ("importjob-retry", "POST"): Rule("/api/imports/{import}/retry/", ("imports.change_importjob",), 200),
    ("imported-patient-list", "GET"): Rule("/api/patients/?patient_id=P1", ("imports.view_importedpatient",), 200),
    ("imported-patient-detail", "GET"): Rule("/api/patients/{patient}/", ("imports.view_importedpatient",), 200),
    ("imported-image-list", "GET"): Rule("/api/images/?patient_id=P1", ("imports.view_importedimage",), 200),
    ("imported-image-detail", "GET"): Rule("/api/images/{image}/", ("imports.view_importedimage",), 200),
    ("imported-image-jpg", "GET"): Rule("/api/images/{image}/jpg", ("imports.view_importedimage",), 200),
    ("admin:imports_start", "GET"): Rule("/admin/imports/importjob/start/", ("imports.start_import",), 200),
    ("project-list", "GET"): Rule("/api/projects/", ("projects.view_project",), 200),
    ("project-list", "POST"): Rule("/api/projects/", ("projects.add_project",), 400),
    ("project-detail", "GET"): Rule("/api/projects/{project}/", ("projects.view_project",), 200),
    ("project-detail", "PUT"): Rule("/api/projects/{project}/", ("projects.change_project",), 400),
    ("project-detail", "PATCH"): Rule("/api/projects/{project}/", ("projects.change_project",), 200,
                                      {"description": "changed"}),
    ("project-detail", "DELETE"): Rule("/api/projects/SPAREPROJ/", ("projects.delete_project",), 204),
    ("project-pseudonyms", "GET"): Rule("/api/projects/{project}/pseudonyms", PSEUDONYM_MAP, 200),
    ("admin:projects_project_pseudonyms", "GET"): Rule("/admin/projects/project/{project_pk}/pseudonyms/",
                                                       PSEUDONYM_MAP, 200),
    # Operations: pausing one job (its change permission, as cancel), and a whole app ("pause apps").
    **{(f"{name}-{verb}", "POST"): Rule(f"/api/{prefix}/{{{key}}}/{verb}/", (change,), 200)
       for name, prefix, key, change in [
           ("echojob", "echo-jobs", "echo", "servers.change_echojob"),
           ("retrievaljob", "retrievals", "retrieval", "retrieval.change_retrievaljob"),
           ("deliveryjob", "deliveries", "delivery", "delivery.change_deliveryjob"),
           ("photoupload", "photo-uploads", "photo", "photos.change_photoupload"),
           ("sendjob", "sends", "send", "sending.change_sendjob"),
           ("importjob", "imports", "import", "imports.change_importjob")]
       for verb in ("pause", "resume")},
    # DICOMweb: any signed-in account searches (it finds only its own: 204 here); storing needs its permission
    # (a JSON body is a 415: it got past the check).
    ("dicomweb-studies", "GET"): Rule("/dicomweb/studies", LOGIN, 204),
    ("dicomweb-studies", "POST"): Rule("/dicomweb/studies", ("catalog.store_dicomweb",), 415),
    ("dicomweb-series", "GET"): Rule("/dicomweb/series", LOGIN, 204),
    ("dicomweb-instances", "GET"): Rule("/dicomweb/instances", LOGIN, 204),
    ("dicomweb-unknown", "GET"): Rule("/dicomweb/studies/not-a-uid", LOGIN, 404),
    ("job-apps", "GET"): Rule("/api/jobs/apps/", ("jobs.view_apppause",), 200),
    ("retention", "GET"): Rule("/admin/retention/", ("jobs.view_all_jobs",), 200),
    ("job-app-pause", "POST"): Rule("/api/jobs/apps/sending/pause/", ("jobs.pause_apps",), 200),
    ("job-app-resume", "POST"): Rule("/api/jobs/apps/sending/resume/", ("jobs.pause_apps",), 200),
}
# The portal's own pages outside the admin: a session login, the page's login form for strangers (302).
PAGES = ("photos:", "viewer")
# Views outside the admin's URL namespace that the admin guards (admin_view): staff sessions only.
ADMIN_PAGES = ("dashboard", "retention")

ADMIN_MODEL_VIEWS = ("_changelist", "_add", "_history", "_delete", "_change", "_password_change")
ADMIN_SITE_VIEWS = {"index", "login", "logout", "password_change", "password_change_done", "autocomplete",
                    "jsi18n", "view_on_site", "app_list"}


def methods_of(callback) -> set[str]:
    if getattr(callback, "actions", None):
        # DRF adds HEAD beside GET once a view has served a request; it follows GET's rule.
        return {m.upper() for m in callback.actions if m != "head"}
    view_class = getattr(callback, "cls", None)
    if view_class is not None:
        return {m.upper() for m in ("get", "post", "put", "patch", "delete") if hasattr(view_class, m)}
    return set()  # a plain Django view: its rules name the methods


def routes(patterns=None, namespace=None):
    """(name, methods) of every named route; admin: only the views a ModelAdmin adds itself."""
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        if isinstance(entry, URLResolver):
            yield from routes(entry.url_patterns, entry.namespace or namespace)
        elif isinstance(entry, URLPattern) and entry.name:
            if namespace == "admin" and (entry.name in ADMIN_SITE_VIEWS or entry.name.endswith(ADMIN_MODEL_VIEWS)):
                continue
            name = f"{namespace}:{entry.name}" if namespace else entry.name
            yield name, methods_of(entry.callback)


def test_every_route_has_a_rule_and_every_rule_a_route():
    found = dict(routes())
    expected = {(name, method) for name, methods in found.items() for method in methods}
    plain_views = {name for name, methods in found.items() if not methods}
    ruled = set(RULES)
    missing = sorted(expected - ruled) + sorted(name for name in plain_views if not any(n == name for n, _ in ruled))
    assert not missing, f"routes without an access rule in tests/access/test_routes.py RULES: {missing}"
    stale = sorted(key for key in ruled if key[0] not in found or (found[key[0]] and key not in expected))
    assert not stale, f"rules for routes that no longer exist: {stale}"


def caller(user=None, *, admin: bool) -> APIClient:
    client = APIClient()
    if user is not None:
        if admin:
            client.force_login(user)
        else:
            from rest_framework.authtoken.models import Token

            client.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    return client


def objects_for(owner) -> dict:
    """A server nothing listens on, a spare one to delete, and one job of each kind of `owner` (an echo, a
    retrieval, a photo upload, a send job, a delivery of the retrieval, an import), an inbox, delivery
    targets (one to delete), and an imported patient with one image (and its JPEG)."""
    from apps.delivery.models import DeliveryJob, DeliveryTarget

    server = DicomServer.objects.create(name="RT", ae_title="RT", host="127.0.0.1", port=1, query_timeout=2)
    DicomServer.objects.create(name="SPARE", ae_title="SPARE", host="127.0.0.1", port=1)
    echo = create_echo_job([server], user=owner)
    retrieval = RetrievalJob.objects.create(created_by=owner, source_name="cases.csv")
    RetrievalItem.objects.create(job=retrieval, line=2, patient_id="P1", study_date="20240101",
                                 dicom_server=server, server_name="RT", status="failed", error="down")
    photo = PhotoUpload.objects.create(created_by=owner, dicom_server=server, server_name="RT", backend="cstore",
                                       patient_id="P1", study_instance_uid="1.2.3", series_instance_uid="1.2.3.4")
    PhotoSend.objects.create(job=photo, status="failed", error="down")
    send = SendJob.objects.create(created_by=owner, source_path="/nowhere", root="/nowhere")
    SendItem.objects.create(job=send, batch=0, status="failed", error="down")
    inbox = Inbox.objects.create(name="WARD", path="/nowhere", archive_path="/nowhere-archive")
    target = DeliveryTarget.objects.create(name="BOX", kind="portal", url="http://127.0.0.1:1", token="t")
    DeliveryTarget.objects.create(name="SPAREBOX", kind="portal", url="http://127.0.0.1:1", token="t")
    delivery = DeliveryJob.for_retrieval(retrieval, target, user=owner, start=False)
    imported = ImportJob.objects.create(created_by=owner, source_path="/nowhere")
    patient = ImportedPatient.objects.create(patient_id="P1")
    image = ImportedImage.objects.create(patient=patient, original_filename="a.dcm", sop_instance_uid="1.2.3",
                                         width=1, height=1, jpg="rt/1.2.3.jpg", source_path="/nowhere/a.dcm")
    image.jpg_path().parent.mkdir(parents=True, exist_ok=True)
    image.jpg_path().write_bytes(b"\xff\xd8\xff\xd9")
    project = Project.objects.create(name="RTP")
    project.patient("P1")
    Project.objects.create(name="SPAREPROJ")
    return {"server": server.name, "echo": echo.pk, "retrieval": retrieval.pk, "photo": photo.pk, "send": send.pk,
            "project": project.name, "project_pk": project.pk,
            "inbox": inbox.name, "target": target.name, "delivery": delivery.pk,
            "import": imported.task_id, "patient": patient.pk, "image": image.pk}


def send(client, method: str, rule: Rule, objects: dict):
    url = rule.url.format(**objects)
    return getattr(client, method.lower())(url, rule.body, format="json") if method != "GET" else client.get(url)


def refused(status: int, *, admin: bool, anonymous: bool) -> bool:
    if admin and anonymous:
        return status == 302  # to the login page
    return status in (401, 403) if anonymous else status == 403


@pytest.mark.parametrize("key", sorted(RULES), ids=lambda key: f"{key[1]} {key[0]}")
def test_route_answers_each_kind_of_caller(key, django_user_model, data_folders):
    rule = RULES[key]
    method = key[1]
    admin = key[0].startswith("admin:") or key[0] in ADMIN_PAGES
    session = admin or key[0].startswith(PAGES)  # a browser's login, not a token
    plain = django_user_model.objects.create_user("plain")
    staff = django_user_model.objects.create_user("staff", is_staff=True)
    permitted = django_user_model.objects.create_user("permitted",
                                                      is_staff=admin or rule.needs == STAFF or rule.staff)
    if isinstance(rule.needs, tuple):
        app_codenames = [p.split(".") for p in rule.needs]
        perms = [Permission.objects.get(content_type__app_label=app, codename=code) for app, code in app_codenames]
        permitted.user_permissions.set(perms)
    objects = objects_for(permitted)

    def status_of(user):
        return send(caller(user, admin=session), method, rule, objects).status_code

    anonymous = status_of(None)
    if rule.needs == OPEN:
        assert anonymous == rule.ok
    else:
        assert refused(anonymous, admin=session, anonymous=True), f"anonymous got {anonymous}"
    plain_status = status_of(plain)
    if rule.needs in (OPEN, LOGIN):
        assert plain_status == rule.ok, f"plain user got {plain_status}"
    elif admin:
        assert plain_status == 302, f"a non-staff user is sent to the admin login, got {plain_status}"
    else:
        assert plain_status == 403, f"plain user got {plain_status}"
    staff_status = status_of(staff)
    if isinstance(rule.needs, tuple):
        assert staff_status == 403, f"staff without permissions got {staff_status}"
    else:
        assert staff_status == rule.ok, f"staff got {staff_status}"
    permitted_status = status_of(permitted)
    assert permitted_status == rule.ok, f"a user with exactly {rule.needs} got {permitted_status}"
