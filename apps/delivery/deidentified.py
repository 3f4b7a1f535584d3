"""A delivery for a research project sends de-identified files only, whatever the mode or target: each
file of the batch is de-identified once into the batch's work folder, named as the pseudonymized download
layout names it (<SERVER>/<shifted date>_<pseudonym>_<modality>/<new SOP UID>.dcm), and those copies are
what is zipped, copied, stored or uploaded. The transform is deterministic (keyed by the project), so a
re-run produces the same bytes and a resumed upload lines up. The originals stay the retrieval's: clearing
after delivery removes them, never only the copies."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from apps.projects.pseudonymize import CannotDeidentify, HeldBack
from apps.retrieval.layout import study_folder


@dataclass
class DeidentifiedBatch:
    entries: list[tuple[str, Path]] = field(default_factory=list)  # (name in the layout, the de-identified copy)
    originals: dict[str, Path] = field(default_factory=dict)  # name -> the retrieved file it came from
    not_sent: list[tuple[str, str]] = field(default_factory=list)  # (new SOP Instance UID, reason)


def layout_name(server: str, result) -> str:
    folder = study_folder(Path(""), server, result.study_date, result.patient_id, result.modality)
    return (folder / f"{result.sop_instance_uid}.dcm").as_posix()


def deidentify_entries(project, entries: list[tuple[str, Path]], work: Path) -> DeidentifiedBatch:
    """`entries`: (name relative to the downloads root, file), the name's first part the server. Writes
    the de-identified copies under `work` (emptied first by the caller) and returns them in name order."""
    pseudonymizer = project.pseudonymizer()
    batch = DeidentifiedBatch()
    for name, path in entries:
        server = name.split("/", 1)[0] if "/" in name else "FILES"
        try:
            result = pseudonymizer.file(path)
        except HeldBack as exc:
            batch.not_sent.append((pseudonymizer.recipe.uid(Path(name).stem), f"held back: {exc.reason}"))
            continue
        except CannotDeidentify as exc:
            batch.not_sent.append((pseudonymizer.recipe.uid(Path(name).stem), f"not de-identified: {exc.reason}"))
            continue
        new_name = layout_name(server, result)
        target = work / new_name
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(result.data)
        os.replace(partial, target)
        batch.originals[new_name] = path
    batch.entries = sorted((name, work / name) for name in batch.originals)
    return batch
