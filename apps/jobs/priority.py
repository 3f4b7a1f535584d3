"""Urgent jobs. A request that asks for `"urgent": true` (and may: the permission "start urgent jobs")
runs inside urgent_jobs(): every job it creates is urgent, whichever app's intake creates it, so the job
APIs share one rule without each intake passing a flag along. Workers take the items of urgent jobs first
(apps/jobs/runner.py)."""
import contextvars
from contextlib import contextmanager

URGENT_PERMISSION = "jobs.start_urgent_jobs"
URGENT_PERMISSION_NAME = "start urgent jobs"

_urgent = contextvars.ContextVar("urgent_jobs", default=False)


@contextmanager
def urgent_jobs(urgent: bool = True):
    token = _urgent.set(urgent)
    try:
        yield
    finally:
        _urgent.reset(token)


def begin(urgent: bool) -> contextvars.Token:
    """urgent_jobs() for code that cannot wrap a block (a view's initial() and finalize_response())."""
    return _urgent.set(urgent)


def end(token: contextvars.Token) -> None:
    _urgent.reset(token)


def requested() -> bool:
    """True inside urgent_jobs(): a job created now is urgent."""
    return _urgent.get()


def may_start_urgent(user) -> bool:
    return bool(user and user.is_authenticated and user.has_perm(URGENT_PERMISSION))


def refusal() -> str:
    return (f"You may not start urgent jobs: \"urgent\": true needs the permission "
            f"\"{URGENT_PERMISSION_NAME}\" ({URGENT_PERMISSION}). Leave it out to start the job normally.")
