"""WADO-RS under gunicorn sends each file with sendfile(2) between the part heads the server writes
(wado._sent_body): on a real socket pair the client reads exactly the multipart answer it would read
from the copying path, Content-Length included; a file that shrank ends the answer short."""
import socket
import threading

import pytest

from apps.dicomweb import wado
from tests.dicomweb.conftest import files_of

pytestmark = pytest.mark.django_db


def received_through(sock_pair, response) -> bytes:
    server, client = sock_pair
    got = []

    def read():
        while chunk := client.recv(1 << 20):
            got.append(chunk)

    reader = threading.Thread(target=read)
    reader.start()
    for chunk in response.streaming_content:  # what the server writes (gunicorn: sendall of each chunk)
        server.sendall(chunk)
    server.shutdown(socket.SHUT_WR)
    reader.join(10)
    return b"".join(got)


def test_sendfile_path_gives_the_same_bytes_as_the_copying_path(catalogued):
    from apps.dicomweb.access import visible

    study = catalogued["alice_data"]["studies"][0]["StudyInstanceUID"]
    files = wado.servable(visible(catalogued["alice"]).filter(study_instance_uid=study))
    assert len(files) == 6
    copied = wado.instances_response(files)
    pair = socket.socketpair()
    try:
        sent = wado.instances_response(files, sock=pair[0])
        body = received_through(pair, sent)
    finally:
        for s in pair:
            s.close()
    boundary = sent["Content-Type"].rsplit("boundary=", 1)[1]
    copied_body = b"".join(copied.streaming_content)
    copied_boundary = copied["Content-Type"].rsplit("boundary=", 1)[1]
    assert body == copied_body.replace(copied_boundary.encode(), boundary.encode())
    assert int(sent["Content-Length"]) == len(body)
    assert body.count(b"Content-Type: application/dicom") == 6


def test_a_file_that_shrank_ends_the_answer_short(catalogued, tmp_path):
    from apps.dicomweb.access import visible

    study = catalogued["alice_data"]["studies"][0]
    files = wado.servable(visible(catalogued["alice"]).filter(study_instance_uid=study["StudyInstanceUID"]))
    row, path, size = files[0]
    files[0] = (row, path, size + 100)  # the catalog's size no longer holds
    pair = socket.socketpair()
    try:
        response = wado.instances_response(files, sock=pair[0])
        body = received_through(pair, response)
    finally:
        for s in pair:
            s.close()
    assert len(body) < int(response["Content-Length"]) and body.count(b"Content-Type:") == 1
    assert files_of(catalogued["downloads"], study)  # nothing on disk was touched
