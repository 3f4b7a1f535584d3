"""API authentication: every /api/ URL refuses anonymous callers, tokens are managed in the admin,
/healthz is open, and `manage.py check --deploy` is clean with production settings."""
import os
import re
import secrets
import string
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.resolvers import RoutePattern
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

pytestmark = pytest.mark.django_db

DUMMY_BY_CONVERTER = {"int": "1", "str": "x", "slug": "x", "path": "x", "uuid": str(uuid.uuid4())}


def concrete(piece) -> str:
    """A URL fragment the pattern piece matches, with dummy values in its parameters."""
    if isinstance(piece, RoutePattern):
        return re.sub(r"<(?:(\w+):)?(\w+)>", lambda m: DUMMY_BY_CONVERTER[m.group(1) or "str"], str(piece))
    text = str(piece).lstrip("^").rstrip("$")
    text = re.sub(r"\(\?P<format>[^)]*\)", "json", text)
    text = re.sub(r"\(\?P<\w+>[^)]*\)", "1", text)
    return text.replace("/?", "/").replace("\\.", ".")


def all_urls(patterns=None, prefix=""):
    for entry in get_resolver().url_patterns if patterns is None else patterns:
        here = prefix + concrete(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from all_urls(entry.url_patterns, here)
        elif isinstance(entry, URLPattern):
            yield "/" + here


API_URLS = sorted({url for url in all_urls() if url.startswith("/api/")})


def test_the_api_url_list_is_real():
    assert {"/api/schema/", "/api/docs/", "/api/servers/", "/api/echo-jobs/", "/api/echo-jobs/1/cancel/",
            "/api/jobs/1/1/1/progress/"} <= set(API_URLS)
    for url in API_URLS:
        resolve(url)  # every generated URL reaches a view (no 404 hiding a missing check)


@pytest.mark.parametrize("url", API_URLS)
def test_anonymous_callers_are_refused_everywhere_under_api(url):
    client = APIClient()
    for method in ("get", "post", "put", "patch", "delete"):
        response = getattr(client, method)(url)
        assert response.status_code in (401, 403), f"{method.upper()} {url} -> {response.status_code}"


def test_healthz_needs_no_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_a_wrong_token_is_refused_and_a_real_one_works(api):
    stranger = APIClient()
    stranger.credentials(HTTP_AUTHORIZATION="Token " + "0" * 40)
    assert stranger.get("/api/servers/").status_code == 401
    assert api.get("/api/servers/").status_code == 200


def test_schema_and_docs_work_for_a_logged_in_user(api, client, user):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200
    assert "/api/echo-jobs/{id}/cancel/" in schema.json()["paths"]
    client.force_login(user)  # the Swagger page is a browser page: session login
    docs = client.get("/api/docs/")
    assert docs.status_code == 200 and b"swagger" in docs.content.lower()


def test_tokens_are_created_and_revoked_in_the_admin(admin_client_logged_in, user):
    assert admin_client_logged_in.get("/admin/authtoken/tokenproxy/").status_code == 200
    created = admin_client_logged_in.post("/admin/authtoken/tokenproxy/add/", {"user": user.pk})
    assert created.status_code == 302, created.content[:800]
    token = Token.objects.get(user=user)
    caller = APIClient()
    caller.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert caller.get("/api/servers/").status_code == 200
    # The admin addresses a token by its user (one token per user).
    revoked = admin_client_logged_in.post(f"/admin/authtoken/tokenproxy/{user.pk}/delete/", {"post": "yes"})
    assert revoked.status_code == 302 and not Token.objects.exists()
    assert caller.get("/api/servers/").status_code == 401


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    alphabet = string.ascii_letters + string.digits + "!@#%^&*(-_=+)"
    env = {**os.environ, "DEBUG": "0", "SECURE_SSL": "1", "DATA_DIR": str(tmp_path),
           "SECRET_KEY": "".join(secrets.choice(alphabet) for _ in range(50))}
    env.pop("DATABASE_URL", None)
    done = subprocess.run([sys.executable, "manage.py", "check", "--deploy"], cwd=settings.BASE_DIR, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout, done.stdout + done.stderr
    assert "WARNING" not in done.stdout + done.stderr
