"""The audit trail: job actions recorded with their actor, server changes recorded by django-auditlog,
and an admin that shows the trail but lets nobody change it."""
import pytest
from auditlog.models import LogEntry

from apps.audit import record
from apps.audit.models import AuditEvent
from apps.servers.models import DicomServer, EchoItem
from tests.jobs.conftest import make_echo_job, make_server

pytestmark = pytest.mark.django_db


def test_start_cancel_and_retry_record_who_did_it(user):
    job = make_echo_job([make_server("LK", 104)] * 2)
    job.start(user=user)
    job.items.filter(pk=job.items.first().pk).update(status="failed", error="down")
    job.retry_failed(user=user)
    job.cancel(user=user)
    events = list(AuditEvent.objects.order_by("id"))
    assert [e.action for e in events] == ["job.started", "job.retried", "job.canceled"]
    assert {(e.actor, e.actor_name, e.target) for e in events} == {(user, "tech", f"servers.EchoJob:{job.pk}")}
    assert events[0].details == {"items": 2} and events[1].details == {"items": 1}
    assert events[2].details == {"canceled_items": 2, "running_items_asked_to_stop": 0}
    assert set(EchoItem.objects.values_list("status", flat=True)) == {"canceled"}


def test_record_accepts_the_system_or_a_named_actor(user):
    assert record(None, "inbox.scanned", "sending.Inbox:3").actor_name == "system"
    event = record("inbox-watcher", "study.sent", "sending.SendJob:4", instances=12)
    assert (event.actor, event.actor_name, event.details) == (None, "inbox-watcher", {"instances": 12})


def test_changing_a_server_is_recorded_by_auditlog_with_the_secret_masked(admin_client_logged_in):
    server = DicomServer.objects.create(name="LK", ae_title="LK", host="127.0.0.1", port=104)
    server.port, server.dicomweb_secret = 4242, "hunter2-password"
    server.save()
    entries = LogEntry.objects.get_for_object(server).order_by("timestamp")
    assert [e.action for e in entries] == [LogEntry.Action.CREATE, LogEntry.Action.UPDATE]
    change = entries.last().changes_dict
    assert change["port"] == ["104", "4242"]
    assert "hunter2-password" not in str(change)

    # Through the admin the entry names the person who did it.
    response = admin_client_logged_in.post(f"/admin/servers/dicomserver/{server.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302, response.content[:500]
    deletion = LogEntry.objects.filter(object_pk=str(server.pk), action=LogEntry.Action.DELETE).get()
    assert deletion.actor == admin_client_logged_in.user


def test_the_audit_admin_shows_events_but_forbids_add_change_and_delete(admin_client_logged_in, user):
    event = record(user, "job.started", "servers.EchoJob:1", items=3)
    other = record(admin_client_logged_in.user, "server.echo", "servers.DicomServer:7")
    listing = admin_client_logged_in.get("/admin/audit/auditevent/")
    assert listing.status_code == 200 and b"job.started" in listing.content and b"DicomServer:7" in listing.content

    def listed(query: str) -> set[int]:
        page = admin_client_logged_in.get(f"/admin/audit/auditevent/?{query}")
        assert page.status_code == 200
        return {pk for pk in (event.pk, other.pk) if f"/admin/audit/auditevent/{pk}/change/" in page.content.decode()}

    assert listed("") == {event.pk, other.pk}
    assert listed("action=job.started") == {event.pk}  # the filters filter
    assert listed(f"actor__id__exact={user.pk}") == {event.pk}
    assert listed(f"actor__id__exact={admin_client_logged_in.user.pk}") == {other.pk}
    assert admin_client_logged_in.get("/admin/audit/auditevent/add/").status_code == 403
    detail = admin_client_logged_in.get(f"/admin/audit/auditevent/{event.pk}/change/")
    assert detail.status_code == 200 and b'name="_save"' not in detail.content  # view only
    assert admin_client_logged_in.post(f"/admin/audit/auditevent/{event.pk}/change/", {"action": "x"}).status_code == 403
    assert admin_client_logged_in.post(f"/admin/audit/auditevent/{event.pk}/delete/", {"post": "yes"}).status_code == 403
    bulk = admin_client_logged_in.post("/admin/audit/auditevent/", {"action": "delete_selected",
                                                                     "_selected_action": [event.pk]})
    assert bulk.status_code == 200 and AuditEvent.objects.filter(pk=event.pk, action="job.started").exists()


def test_every_app_has_its_models_tracked_once_with_the_options_its_ready_gave():
    from auditlog.registry import auditlog

    from apps.audit import track_changes
    from apps.imports.models import ImportedPatient
    from apps.photos.models import PhotoSettings
    from apps.projects.models import Project
    from apps.sending.models import Inbox

    tracked = {model.__name__ for model in auditlog.get_models()}
    assert {"DicomServer", "ImportedPatient", "Inbox", "PhotoSettings", "Project"} <= tracked
    assert auditlog.get_model_fields(DicomServer)["mask_fields"] == ["dicomweb_secret"]
    assert auditlog.get_model_fields(Project)["exclude_fields"] == ["secret", "updated_at"]
    assert auditlog.get_model_fields(Inbox)["exclude_fields"] == ["updated_at", "unmatched", "disabled_reason"]
    assert auditlog.get_model_fields(ImportedPatient)["exclude_fields"] == []
    assert auditlog.get_model_fields(PhotoSettings)["exclude_fields"] == []
    track_changes(DicomServer)  # a second call (a ready() run again) keeps the secret masked
    assert auditlog.get_model_fields(DicomServer)["mask_fields"] == ["dicomweb_secret"]
