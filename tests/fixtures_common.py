"""API, user and network fixtures shared by every app's tests."""
import socket

import pytest


@pytest.fixture
def user(db, django_user_model):
    return django_user_model.objects.create_user(username="tech", password="tech-pass-123")


@pytest.fixture
def api(user):
    """An API client authenticated with a real DRF token (the way scripts use the portal)."""
    from rest_framework.authtoken.models import Token
    from rest_framework.test import APIClient

    client = APIClient()
    token = Token.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def admin_client_logged_in(db, django_user_model, client):
    admin = django_user_model.objects.create_superuser(username="boss", password="boss-pass-123", email="")
    client.force_login(admin)
    client.user = admin
    return client


def unused_port() -> int:
    """A loopback TCP port nobody listens on (bound once, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def free_port():
    return unused_port()
