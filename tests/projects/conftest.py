"""The receiving portal of the delivery tests (this portal under live_server), for a project's delivery."""
from tests.delivery.conftest import receiving, trusted_loopback, unpack_at_once, uploader  # noqa: F401
