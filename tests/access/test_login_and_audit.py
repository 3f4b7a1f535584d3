"""Failed logins and bad API tokens are locked out (django-axes, one count for both) and API rates are
throttled; model changes made through the API are audited with the real user and the client address;
Swagger UI comes from the portal's own static files."""
import pytest
from auditlog.models import LogEntry
from django.conf import settings
from rest_framework.test import APIClient
from rest_framework.throttling import UserRateThrottle

from apps.servers.models import DicomServer

pytestmark = pytest.mark.django_db
SERVER = {"name": "LK", "ae_title": "LK", "host": "127.0.0.1", "port": 104}


def test_bad_tokens_lock_the_address_out_for_bad_tokens_only(api, user):
    limit = settings.LOGIN_ADDRESS_FAILURE_LIMIT
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    codes = [guesser.get("/api/servers/").status_code for _ in range(limit - 1)]
    assert codes == [401] * (limit - 1)
    locked = guesser.get("/api/servers/")
    assert locked.status_code == 429
    assert "Too many failed logins or bad API tokens from this address" in locked.json()["detail"]
    assert guesser.get("/api/servers/").status_code == 429
    assert api.get("/api/servers/").status_code == 200  # a good token from the same address is served
    assert api.get("/api/servers/", REMOTE_ADDR="127.0.0.9").status_code == 200  # another address is not
    from axes.models import AccessAttempt

    attempt = AccessAttempt.objects.get()
    assert attempt.username == "(API token)" and "0000" not in str(attempt.__dict__)  # the token is not stored


def test_wrong_admin_passwords_lock_the_login_out(client, user):
    user.is_staff = True
    user.save()
    for _ in range(settings.LOGIN_FAILURE_LIMIT - 1):
        page = client.post("/admin/login/", {"username": "tech", "password": "wrong"})
        assert page.status_code == 200 and "Please enter the correct username and password" in page.content.decode()
    assert client.post("/admin/login/", {"username": "tech", "password": "wrong"}).status_code == 429
    locked = client.post("/admin/login/", {"username": "tech", "password": "tech-pass-123"})
    assert locked.status_code == 429
    assert "_auth_user_id" not in client.session


def test_api_requests_are_throttled_per_user(api, monkeypatch):
    monkeypatch.setattr(UserRateThrottle, "THROTTLE_RATES", {"user": "3/min"})
    codes = [api.get("/api/servers/").status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]


def test_an_api_change_with_a_token_is_audited_with_the_user_and_address(api, user):
    created = api.post("/api/servers/", SERVER, format="json", REMOTE_ADDR="127.0.0.7")
    assert created.status_code == 201
    api.patch("/api/servers/LK/", {"port": 105}, format="json", REMOTE_ADDR="127.0.0.7")
    entries = LogEntry.objects.get_for_object(DicomServer.objects.get()).order_by("timestamp")
    assert [(e.action, e.actor, e.remote_addr) for e in entries] == [
        (LogEntry.Action.CREATE, user, "127.0.0.7"), (LogEntry.Action.UPDATE, user, "127.0.0.7")]
    assert entries.last().changes_dict["port"] == ["104", "105"]
    from apps.audit.models import AuditEvent

    api.post("/api/servers/LK/echo/", REMOTE_ADDR="127.0.0.7")  # an action: recorded by apps.audit
    assert AuditEvent.objects.values_list("action", "actor", "client_address").get() == (
        "server.echo", user.pk, "127.0.0.7")


def test_changing_who_may_use_a_server_is_audited(api, user):
    from django.contrib.auth.models import Group

    Group.objects.create(name="Radiology")
    api.post("/api/servers/", SERVER, format="json")
    changed = api.patch("/api/servers/LK/", {"open_to_everyone": False, "retrieve_groups": ["Radiology"]},
                        format="json")
    assert changed.status_code == 200 and changed.json()["retrieve_groups"] == ["Radiology"]
    entries = LogEntry.objects.get_for_object(DicomServer.objects.get()).order_by("timestamp")
    changes = [e.changes_dict for e in entries if e.actor == user]
    assert {"open_to_everyone": ["True", "False"]} in changes
    assert any(c.get("retrieve_groups", {}).get("objects") == ["Radiology"] for c in changes), changes


def test_a_forged_forwarded_address_is_not_recorded_nor_escapes_the_lockout(api, user, settings):
    forged = {"REMOTE_ADDR": "127.0.0.7", "HTTP_X_FORWARDED_FOR": "10.9.9.9"}
    assert api.post("/api/servers/", SERVER, format="json", **forged).status_code == 201
    assert LogEntry.objects.get().remote_addr == "127.0.0.7"
    settings.BEHIND_PROXY = True  # the proxy appends the real client: the last entry counts
    api.patch("/api/servers/LK/", {"port": 105}, format="json", REMOTE_ADDR="127.0.0.1",
              HTTP_X_FORWARDED_FOR="10.9.9.9, 192.0.2.5")
    assert LogEntry.objects.order_by("timestamp").last().remote_addr == "192.0.2.5"
    guesser = APIClient()
    guesser.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    for n in range(settings.LOGIN_ADDRESS_FAILURE_LIMIT - 1):  # a new forged first entry each time changes nothing
        guesser.get("/api/servers/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR=f"10.0.0.{n}, 192.0.2.66")
    locked = guesser.get("/api/servers/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="10.1.1.1, 192.0.2.66")
    assert locked.status_code == 429


def test_an_api_change_in_a_session_is_audited_with_the_user(user):
    browser = APIClient()
    browser.force_login(user)
    assert browser.post("/api/servers/", SERVER, format="json").status_code == 201
    assert LogEntry.objects.get().actor == user


def test_swagger_ui_is_served_from_the_portals_own_static_files(client, user, settings):
    settings.WHITENOISE_USE_FINDERS = True  # serve from the apps' static folders, as after collectstatic
    client.force_login(user)
    page = client.get("/api/docs/").content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js" in page
    assert "cdn" not in page.lower() and "@latest" not in page
    script = client.get("/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js")
    assert script.status_code == 200 and b"SwaggerUIBundle" in b"".join(script.streaming_content)


def test_metrics_need_staff(client, user):
    client.force_login(user)
    assert client.get("/metrics").status_code == 403
    user.is_staff = True
    user.save()
    assert "servers.echojob.by_status" in client.get("/metrics?format=json").json()


def test_a_staff_user_manages_only_their_own_token(client, django_user_model):
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    boss = django_user_model.objects.create_superuser("boss", email="")
    staff = django_user_model.objects.create_user("keeper", is_staff=True)
    staff.user_permissions.set(Permission.objects.filter(content_type__app_label="authtoken"))
    Token.objects.create(user=boss)
    client.force_login(staff)
    assert "boss" not in client.get("/admin/authtoken/tokenproxy/").content.decode()
    refused = client.post("/admin/authtoken/tokenproxy/add/", {"user": boss.pk})
    assert refused.status_code == 200 and "Select a valid choice" in refused.content.decode()
    assert client.post("/admin/authtoken/tokenproxy/add/", {"user": staff.pk}).status_code == 302
    assert set(Token.objects.values_list("user__username", flat=True)) == {"boss", "keeper"}


def test_a_login_without_a_request_still_works(client, user):
    """The test client's login() (and a shell's authenticate()) come with no request for axes to judge."""
    assert client.login(username="tech", password="tech-pass-123")
    assert not client.login(username="tech", password="wrong")
