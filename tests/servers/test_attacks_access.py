"""Attacks on server access over real HTTP (live_server): a user who may only *view* servers must not make
the portal open associations to a server closed to their groups (C-ECHO), and a case list naming an
unknown server must not reveal the names of servers the user may not use."""
import httpx
import pytest
from django.contrib.auth.models import Group, Permission
from rest_framework.authtoken.models import Token

from apps.audit.models import AuditEvent
from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def radiology(db):
    return Group.objects.create(name="Radiology")


@pytest.fixture
def viewer(django_user_model):
    """May view servers and start retrievals (of identified data, as every account could before projects);
    in no group."""
    person = django_user_model.objects.create_user("viewer")
    person.user_permissions.set(Permission.objects.filter(codename__in=[
        "view_dicomserver", "start_retrieval", "add_retrievaljob", "view_retrievaljob", "handle_identified_data"]))
    return person


def http_for(live_server, person) -> httpx.Client:
    token = Token.objects.create(user=person).key
    return httpx.Client(base_url=live_server.url, headers={"Authorization": f"Token {token}"}, timeout=60)


def closed(name, radiology, host="127.0.0.1", port=104, **more) -> DicomServer:
    server = DicomServer.objects.create(name=name, ae_title=name, host=host, port=port, open_to_everyone=False,
                                        retries=0, **more)
    for groups in (server.query_groups, server.retrieve_groups, server.send_groups):
        groups.add(radiology)
    return server


def test_echo_of_a_server_closed_to_the_user_is_refused_before_any_connection(live_server, viewer, radiology,
                                                                             silent_listener):
    port, accepted = silent_listener
    closed("HIDDEN", radiology, port=port)
    with http_for(live_server, viewer) as http:
        refused = http.post("/api/servers/HIDDEN/echo/")
    assert refused.status_code == 403
    assert refused.json()["detail"] == ("You may not use server 'HIDDEN': it is open only to its query, retrieve "
                                        "and send groups. Ask an administrator to add you to one of them.")
    assert accepted == []  # no association was even tried
    assert not AuditEvent.objects.filter(action="server.echo").exists()


def test_echo_works_for_a_member_of_one_of_the_servers_groups(live_server, viewer, radiology, orthanc):
    peer = orthanc.peer()
    server = closed("ORTH", radiology, host=peer.host, port=peer.port)
    DicomServer.objects.filter(pk=server.pk).update(ae_title=peer.ae_title)
    server.query_groups.clear()
    server.retrieve_groups.clear()  # sending is enough to test the connection
    viewer.groups.add(radiology)
    with http_for(live_server, viewer) as http:
        answer = http.post("/api/servers/ORTH/echo/")
    assert answer.status_code == 200 and answer.json()["ok"] is True, answer.text


def test_an_unknown_server_in_a_case_list_names_only_the_servers_the_user_may_use(live_server, viewer, radiology):
    closed("SECRETPACS", radiology)
    DicomServer.objects.create(name="OPENPACS", ae_title="OPENPACS", host="127.0.0.1", port=104)
    with http_for(live_server, viewer) as http:
        answer = http.post("/api/retrievals/", json={"rows": [
            {"PatientID": "P1", "StudyDate": "2024-01-01", "Server": "NOSUCH"}]})
    assert answer.status_code == 400, answer.text
    message = answer.json()["row_errors"][0]["message"]
    assert message == "unknown server 'NOSUCH' (known: OPENPACS)"
    assert "SECRETPACS" not in answer.text


def test_the_admins_echo_action_skips_a_server_closed_to_the_user(client, django_user_model, radiology,
                                                                   silent_listener):
    port, accepted = silent_listener
    server = closed("HIDDEN", radiology, port=port)
    staff = django_user_model.objects.create_user("desk", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(codename="view_dicomserver"))
    client.force_login(staff)
    page = client.post("/admin/servers/dicomserver/", {"action": "test_echo", "_selected_action": [server.pk]},
                       follow=True)
    assert "HIDDEN: not tested. You may not use server &#x27;HIDDEN&#x27;" in page.content.decode()
    assert accepted == [] and not AuditEvent.objects.filter(action="server.echo").exists()


def test_an_echo_job_leaves_out_the_servers_closed_to_the_user(live_server, viewer, radiology, silent_listener):
    port, accepted = silent_listener
    closed("HIDDEN", radiology, port=port)
    DicomServer.objects.create(name="OPENPACS", ae_title="OPENPACS", host="127.0.0.1", port=port)
    viewer.user_permissions.add(*Permission.objects.filter(codename__in=["add_echojob", "view_echojob"]))
    from apps.servers.models import EchoJob

    with http_for(live_server, viewer) as http:
        started = http.post("/api/echo-jobs/")
    assert started.status_code == 201, started.text
    job = EchoJob.objects.get(pk=started.json()["id"])
    assert [item.server_name for item in job.items.all()] == ["OPENPACS"]
