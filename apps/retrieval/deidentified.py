"""Filing for a research project: each staged instance is de-identified once, as it is filed (read from
staging, de-identified in memory, written under the pseudonymized layout as <new SOP UID>.dcm, never
a second pass over filed files); the staged original is removed with the staging folder. An instance
held back (its pixels may show the patient) or that cannot be de-identified is not filed: it is listed
with its reason under the project's UID, never its original one."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from apps.projects.pseudonymize import CannotDeidentify, Deidentified, HeldBack, Pseudonymizer


@dataclass
class Filed:
    count: int = 0
    bytes: int = 0
    folders: list[Path] = field(default_factory=list)
    not_filed: list[tuple[str, str]] = field(default_factory=list)  # (new SOP Instance UID, reason)
    pseudonym: str = ""


class DeidentifiedFilingFailed(Exception):
    def __init__(self, reason: str, removed: int):
        super().__init__(reason)
        self.reason, self.removed = reason, removed


def file_deidentified(pseudonymizer: Pseudonymizer, staged: list[Path],
                      folder_of: Callable[[Deidentified], Path]) -> Filed:
    """De-identify and file each staged instance (named <SOP Instance UID>.dcm by the receiver) into
    `folder_of(result)`. A write that fails takes back what this call wrote, then raises
    DeidentifiedFilingFailed with the OS's reason."""
    filed, written = Filed(), []
    for path in staged:
        try:
            target, result = pseudonymizer.write(path, folder_of)
        except HeldBack as exc:
            filed.not_filed.append((pseudonymizer.recipe.uid(path.stem), f"held back: {exc.reason}"))
            continue
        except CannotDeidentify as exc:
            filed.not_filed.append((pseudonymizer.recipe.uid(path.stem), f"not de-identified: {exc.reason}"))
            continue
        except OSError as exc:
            for done in written:
                done.unlink(missing_ok=True)
            raise DeidentifiedFilingFailed(exc.strerror or str(exc), len(written)) from None
        written.append(target)
        filed.count += 1
        filed.bytes += len(result.data)
        filed.pseudonym = result.patient_id
        if target.parent not in filed.folders:
            filed.folders.append(target.parent)
    return filed
