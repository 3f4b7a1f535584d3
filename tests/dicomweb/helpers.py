"""Small helpers of the DICOMweb tests: an API client with a user's token, and multipart bodies."""
import uuid

from rest_framework.test import APIClient

from apps.dicom import multipart


def token_client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {user.token}")
    return client


def parts_of(response) -> list[tuple[dict, bytes]]:
    body = b"".join(response.streaming_content) if response.streaming else response.content
    main, params = multipart.parse_media_type(response["Content-Type"])
    assert main == "multipart/related"
    return [(p.headers, body[p.start:p.end]) for p in multipart.split(body, params["boundary"])]


def stow_body(parts: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    """(body, Content-Type) of a STOW-RS request holding these (media type, bytes) parts."""
    boundary = f"stow-{uuid.uuid4().hex}"
    chunks = []
    for media, data in parts:
        chunks.append(f"--{boundary}\r\nContent-Type: {media}\r\n\r\n".encode() + data + b"\r\n")
    chunks.append(f"--{boundary}--\r\n".encode())
    return b"".join(chunks), f'multipart/related; type="application/dicom"; boundary={boundary}'
