"""When our receiver is not there, the retrieval says so: `receiver_problem()` against no listener, a
silent port, a DICOM service with another AE title, and the real Storage SCP."""
import pytest

from apps.dicom.peers import LocalAE
from apps.dicom.wire.storage_scp import LeanStorageSCP
from apps.retrieval.receiver_check import receiver_problem


@pytest.fixture
def receiver_settings(settings, free_port):
    settings.DICOM_AE_TITLE, settings.DICOM_HOST, settings.DICOM_PORT = "OURS", "127.0.0.1", free_port
    return settings


def test_no_receiver_names_ae_host_port_and_how_to_start_it(receiver_settings):
    problem = receiver_problem()
    assert "OURS" in problem and f"127.0.0.1:{receiver_settings.DICOM_PORT}" in problem
    assert "manage.py receive" in problem and "make run" in problem and "refused" in problem.lower()


def test_the_running_receiver_is_no_problem(receiver_settings):
    with LeanStorageSCP(LocalAE(ae_title="OURS", port=receiver_settings.DICOM_PORT), lambda i: 0):
        assert receiver_problem(timeout=10) is None  # generous: a loaded CI machine must not make it a "no answer"


def test_another_dicom_service_on_our_port_is_named_as_not_ours(receiver_settings):
    with LeanStorageSCP(LocalAE(ae_title="SOMEONE", port=receiver_settings.DICOM_PORT), lambda i: 0):
        problem = receiver_problem(timeout=10)
    assert "refuses the AE title OURS: it is not the portal's receiver" in problem and "DICOM_AE_TITLE" in problem


def test_a_port_that_accepts_and_never_answers_is_not_a_receiver(settings, silent_listener):
    settings.DICOM_AE_TITLE, settings.DICOM_HOST, settings.DICOM_PORT = "OURS", "127.0.0.1", silent_listener[0]
    problem = receiver_problem(timeout=0.5)
    assert "does not answer a C-ECHO" in problem and "manage.py receive" in problem
