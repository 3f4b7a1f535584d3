"""Reading a photo upload without trusting it: every photo streams to a temporary file on disk and is
refused the moment it grows past the size limit, so an oversized upload never lands in memory and
never fills the disk. A refusal is noted on the request; the view answers it as VALIDATION_ERROR."""
from collections.abc import Callable

from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.http import QueryDict
from django.utils.datastructures import MultiValueDict

MAX_PHOTOS = 30  # photos in one submission
FORM_OVERHEAD = 1024 * 1024  # the text fields and multipart boundaries around the photos


class PhotoUploadHandler(TemporaryFileUploadHandler):
    """`limit()` gives the largest photo in bytes; it is asked when the upload starts to arrive."""

    chunk_size = 2**20  # Django's 64 kB means a Python loop turn per 64 kB of every photo

    def __init__(self, request, limit: Callable[[], int]):
        super().__init__(request)
        self.limit = limit
        self.max_bytes = 0
        self.files_seen = 0

    def _refuse(self, message: str):
        self.request.photo_upload_refused = message
        raise StopUpload(connection_reset=False)  # read and drop the rest, so the client gets our answer

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.max_bytes = self.limit()
        if content_length > self.max_bytes * MAX_PHOTOS + FORM_OVERHEAD:
            self.request.photo_upload_refused = (
                f"the upload is {content_length / 2**20:.0f} MB; at most {MAX_PHOTOS} photos of "
                f"{self.max_bytes // 2**20} MB each are accepted.")
            return QueryDict(), MultiValueDict()  # nothing is read
        return None

    def new_file(self, field_name, file_name, *args, **kwargs):
        self.files_seen += 1
        if self.files_seen > MAX_PHOTOS:
            self._refuse(f"more than {MAX_PHOTOS} photos in one upload; send them in several.")
        super().new_file(field_name, file_name, *args, **kwargs)

    def receive_data_chunk(self, raw_data, start):
        if start + len(raw_data) > self.max_bytes:
            self._refuse(f"{self.file_name} is larger than the {self.max_bytes // 2**20} MB a photo may have.")
        return super().receive_data_chunk(raw_data, start)
