"""Typed DICOM errors. Each carries a message a technologist understands and says whether a retry
may help (`retriable`): a refused connection or a timeout may pass; a rejected association or an
unknown AE title will not until someone changes the configuration."""
from __future__ import annotations


class DicomError(Exception):
    retriable = False

    def __init__(self, message: str, *, status: int | None = None):
        super().__init__(message)
        self.message = message
        self.status = status  # DIMSE status word, when one was received

    def __str__(self) -> str:
        return self.message


class ConnectionFailed(DicomError):
    """TCP connection refused, host unreachable, name not resolvable."""

    retriable = True


class AssociationRejected(DicomError):
    """The peer said no to the association (wrong called/calling AE title, no accepted contexts)."""


class AssociationAborted(DicomError):
    """The peer (or the network) dropped the association in the middle."""

    retriable = True


class DicomTimeout(DicomError):
    """No answer within the configured time (connect, association, or a DIMSE response)."""

    retriable = True


class DimseFailure(DicomError):
    """The peer answered with a failure status (e.g. 0xA700 out of resources, 0xC000 cannot understand)."""


class InvalidDicomFile(DicomError):
    """A file that is not DICOM, is truncated, or lacks the attributes needed to send it."""


class DicomWebError(DicomError):
    """An HTTP-level failure talking to a DICOMweb service."""

    def __init__(self, message: str, *, http_status: int | None = None, retriable: bool = False):
        super().__init__(message)
        self.http_status = http_status
        self.retriable = retriable
