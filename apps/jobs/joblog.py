"""Log lines for job work: one line per event, always carrying the job and item ids.

Patient names and IDs may only be logged at DEBUG (the portal's privacy rule); item errors, which can quote a
patient, are therefore logged at DEBUG by the runner and stored in the database for users."""
import logging
import traceback


class JobLogAdapter(logging.LoggerAdapter):
    """Prefixes "job=<app.Model:pk> item=<pk>" and puts the same ids on the record (record.job, record.item)."""

    def process(self, msg, kwargs):
        kwargs["extra"] = {**self.extra, **kwargs.get("extra", {})}
        return f"job={self.extra['job']} item={self.extra['item']} {msg}", kwargs


def item_logger(item, name: str = "apps.jobs") -> JobLogAdapter:
    job = item.job
    return JobLogAdapter(logging.getLogger(name), {"job": f"{job._meta.label}:{job.pk}", "item": item.pk})


def log_crash(log: logging.LoggerAdapter, exc: BaseException) -> None:
    """An unexpected exception: the stack (code locations only) at ERROR, the full exception at DEBUG.
    The exception's message is left out above DEBUG because it may quote patient data."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    log.error("crashed with %s; stack (message only at DEBUG):\n%s", type(exc).__name__, frames.rstrip())
    log.debug("crash details", exc_info=exc)
