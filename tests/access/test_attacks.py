"""Attacks on who may log in, over real HTTP (the portal under test served by live_server): a guesser
sharing an address with the admin (a NAT, a proxy, the hospital's one outgoing address) must be stopped
without locking the admin, and a guesser cycling through unknown names or tokens meets a per-address limit."""
import re

import httpx
import pytest
from django.contrib.auth.models import Permission
from rest_framework.authtoken.models import Token

pytestmark = pytest.mark.django_db(transaction=True)
GUESSER_TOKEN = "Token " + "0" * 40


@pytest.fixture
def limits(settings):
    settings.LOGIN_FAILURE_LIMIT = 3
    settings.LOGIN_ADDRESS_FAILURE_LIMIT = 7
    return settings


@pytest.fixture
def accounts(db, django_user_model):
    boss = django_user_model.objects.create_superuser(username="boss", password="boss-pass-123", email="")
    tech = django_user_model.objects.create_user(username="tech", password="tech-pass-123", is_staff=True)
    tech.user_permissions.add(Permission.objects.get(codename="view_dicomserver"))
    return {"boss": Token.objects.create(user=boss).key, "tech": Token.objects.create(user=tech).key}


def client(live_server, address="127.0.0.1") -> httpx.Client:
    """An HTTP client whose connections come from `address` (any 127/8 address reaches the server)."""
    return httpx.Client(base_url=live_server.url, transport=httpx.HTTPTransport(local_address=address), timeout=30)


def admin_login(http: httpx.Client, username: str, password: str) -> httpx.Response:
    page = http.get("/admin/login/")
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    return http.post("/admin/login/", data={"username": username, "password": password,
                                            "csrfmiddlewaretoken": csrf, "next": "/admin/"})


def token_get(http: httpx.Client, token: str) -> int:
    return http.get("/api/servers/", headers={"Authorization": token}).status_code


def test_bad_tokens_from_the_admins_address_never_lock_the_admins_token_or_password(live_server, limits, accounts):
    with client(live_server) as guesser:
        codes = [token_get(guesser, GUESSER_TOKEN) for _ in range(limits.LOGIN_ADDRESS_FAILURE_LIMIT + 3)]
    assert codes[:limits.LOGIN_ADDRESS_FAILURE_LIMIT - 1] == [401] * (limits.LOGIN_ADDRESS_FAILURE_LIMIT - 1)
    assert set(codes[limits.LOGIN_ADDRESS_FAILURE_LIMIT:]) == {429}, codes  # the guesser is stopped
    with client(live_server) as same_address:
        assert token_get(same_address, GUESSER_TOKEN) == 429
        assert token_get(same_address, f"Token {accounts['boss']}") == 200
        assert token_get(same_address, f"Token {accounts['tech']}") == 200
        assert admin_login(same_address, "boss", "boss-pass-123").status_code == 302


def test_wrong_passwords_lock_that_account_from_that_address_only(live_server, limits, accounts):
    with client(live_server) as guesser:
        codes = [admin_login(guesser, "tech", "wrong").status_code for _ in range(limits.LOGIN_FAILURE_LIMIT + 1)]
        assert codes[:limits.LOGIN_FAILURE_LIMIT - 1] == [200] * (limits.LOGIN_FAILURE_LIMIT - 1)
        assert codes[-1] == 429
        locked = admin_login(guesser, "tech", "tech-pass-123")
        assert locked.status_code == 429  # the right password no longer helps from here
    with client(live_server) as colleague:  # the same address (a NAT): the admin and tech's token work
        assert admin_login(colleague, "boss", "boss-pass-123").status_code == 302
        assert token_get(colleague, f"Token {accounts['tech']}") == 200
    with client(live_server, "127.0.0.2") as elsewhere:  # tech from another address logs in
        assert admin_login(elsewhere, "tech", "tech-pass-123").status_code == 302


def test_unknown_names_meet_the_higher_per_address_limit(live_server, limits, accounts):
    with client(live_server) as guesser:
        codes = [admin_login(guesser, f"nobody{n}", "x").status_code
                 for n in range(limits.LOGIN_ADDRESS_FAILURE_LIMIT + 1)]
        assert codes[:limits.LOGIN_FAILURE_LIMIT + 1] == [200] * (limits.LOGIN_FAILURE_LIMIT + 1)  # above the pair limit
        assert codes[-1] == 429, codes
        assert admin_login(guesser, "someone-else", "x").status_code == 429  # a new name from there: still locked
        assert admin_login(guesser, "boss", "boss-pass-123").status_code == 302  # a real account is not
    with client(live_server, "127.0.0.3") as elsewhere:
        assert admin_login(elsewhere, "nobody0", "x").status_code == 200  # the limit is per address


def test_the_attempts_keep_no_guessed_name_nor_token(live_server, limits, accounts):
    from axes.models import AccessAttempt

    with client(live_server) as guesser:
        admin_login(guesser, "typed-my-password-here", "x")
        token_get(guesser, GUESSER_TOKEN)
    stored = " ".join(str(vars(a)) for a in AccessAttempt.objects.all())
    assert "typed-my-password-here" not in stored and "0000000000" not in stored
    assert sorted(AccessAttempt.objects.values_list("username", flat=True)) == ["(API token)", "(unknown account)"]
