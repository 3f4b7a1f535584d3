"""What an item's process() raises to end the item with a given status and a user-readable message.

apps.dicom.errors.DicomError is understood too (see runner.run_item): retriable ones are retried while
attempts remain, a final DicomTimeout ends as timed_out, any other DicomError as failed."""


class ItemFailed(Exception):
    """The item cannot be done; the message tells the user why (stored in item.error)."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class ItemTimedOut(ItemFailed):
    """The item ran out of time (e.g. the PACS stopped sending)."""


class ItemCanceled(Exception):
    """process() noticed ctx.should_stop() and stopped early."""
