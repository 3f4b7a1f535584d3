"""What other apps attach to a retrieval as it starts. Retrieval imports none of them: an app that builds
on retrieval registers an `Attachment` in its AppConfig.ready(), and retrieval's API, admin upload and
intake consult this registry. The attachment's `name` is the key everywhere: the API request's field,
the keyword of `intake.start_jobs`, the admin's hidden values."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable


@dataclass(frozen=True)
class Attachment:
    name: str
    # A DRF field for the retrieval API's request body; its validated value is the attachment's options.
    request_field: Callable[[], Any]
    # Called once per retrieval job created from a list: (job, options, user, the list's line numbers).
    started: Callable[..., Any]
    # A form mixin for the admin's case-list upload and its confirm step (fields shown after the upload's).
    form: type | None = None
    # From a valid form of that mixin: the options (None when not chosen) and the values the preview
    # carries to the confirm step.
    form_options: Callable[[Any], Any] = lambda form: None
    form_hidden: Callable[[Any], dict] = lambda form: {}
    # What the preview says of the chosen options (from the valid upload form).
    preview: Callable[[Any], str] = lambda form: ""
    # Why this user may not start with these options, or None.
    refusal: Callable[[Any, Any], str | None] = lambda user, options: None
    # A few words the admin adds to its "Started ..." message, e.g. ", sent on to X".
    summary: Callable[[Any], str] = lambda options: ""
    # Read-only fields the retrieval job API shows (name -> DRF field factory), e.g. the jobs attached to it.
    job_fields: dict[str, Callable[[], Any]] = field(default_factory=dict)


_registry: dict[str, Attachment] = {}


def register(attachment: Attachment) -> None:
    _registry[attachment.name] = attachment


def attachments() -> list[Attachment]:
    return list(_registry.values())


def attach(jobs, chosen: dict[str, Any], user, *, lines: list[int] | None = None) -> None:
    """Run each chosen attachment (options not None) for each job."""
    for name, options in chosen.items():
        if options is None:
            continue
        if name not in _registry:
            raise TypeError(f"nothing is registered to attach {name!r} to a retrieval")
        for job in jobs:
            _registry[name].started(job, options, user, lines=lines)


def refusal(chosen: dict[str, Any], user) -> str | None:
    for name, options in chosen.items():
        if options is not None and name in _registry:
            why = _registry[name].refusal(user, options)
            if why:
                return why
    return None


def with_forms(base: type) -> type:
    """`base` with every attachment's form mixin after it (their fields come last)."""
    mixins = tuple(a.form for a in _registry.values() if a.form is not None)
    return type(base.__name__, (base, *mixins), {"__module__": base.__module__}) if mixins else base
