"""The receiving portal of the delivery tests (this portal under live_server), for a project's delivery; the
import root and the emptied Orthanc of the sending tests, for a project's sends; the portal's receiver before a
real Orthanc and a researcher without handle_identified_data, for a project's retrievals and queries."""
from tests.delivery.conftest import receiving, trusted_loopback, unpack_at_once, uploader  # noqa: F401
from tests.projects.test_retrieval_orthanc import portal, researcher  # noqa: F401
from tests.sending.conftest import pacs, root  # noqa: F401
