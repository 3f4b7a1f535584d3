"""Inbox folder-name patterns, matched by RE2 (google-re2): its matching time grows with the name's
length only, so no pattern (`^((a+)+)$`, say) can stall the one watcher that serves every inbox.
RE2 has no look-arounds or back-references; a pattern using them is refused when the inbox is saved."""
from __future__ import annotations

import functools

import re2

from apps.dicom.paths import control_character
from apps.dicom.rewrite import Patient, patient_from_folder

_OPTIONS = re2.Options()
_OPTIONS.log_errors = False  # the reason goes to whoever saves the pattern, not to stderr


class PatternError(ValueError):
    pass


@functools.lru_cache(maxsize=64)
def compile_pattern(text: str):
    """The compiled pattern, or PatternError naming what is wrong with it."""
    try:
        compiled = re2.compile(text, _OPTIONS)
    except re2.error as exc:
        detail = exc.args[0].decode("utf-8", "replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise PatternError(f"Not a valid pattern for RE2, the matcher inboxes use (no look-arounds or "
                           f"back-references): {detail}.") from None
    if compiled.groups != 2:
        raise PatternError(f"The pattern needs exactly two groups, PatientID and PatientName; it has "
                           f"{compiled.groups}.")
    return compiled


def patient_of(folder: str, pattern: str) -> Patient:
    """The patient a folder name gives, or ValueError saying why the folder is left alone."""
    bad = control_character(folder)
    if bad:
        raise ValueError(f"the folder name contains {bad}; a folder name is one line of plain text")
    try:
        folder.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("the folder name is not valid UTF-8") from None
    return patient_from_folder(folder, compile_pattern(pattern))
