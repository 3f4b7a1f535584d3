"""Filing a study by renaming a whole folder of ours (apps/retrieval/layout.py, file_into's `movable`): a
new case folder is the hold or the finished C-GET's staging folder renamed, in one system call; anything
else (a folder holding more than the study, an existing case folder, a case folder made meanwhile) is
filed file by file as before, and nothing is ever replaced. Against Orthanc, with the receiver:
tests/retrieval/test_series_moves.py (the hold of series moved in parallel, a C-GET's folder)."""
import os
from pathlib import Path

import pytest

from apps.retrieval import layout
from apps.retrieval.layout import FilingFailed, file_into, rename_new


def instances(folder: Path, *names: str) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for n, name in enumerate(names):
        (folder / name).write_bytes(b"x" * (n + 10))
    return [folder / name for name in names]


def test_a_new_case_folder_is_the_movable_folder_renamed(tmp_path):
    hold = tmp_path / "staging" / "hold"
    staged = instances(hold, "1.dcm", "2.dcm", "3.dcm")
    inode = os.stat(hold).st_ino
    target = tmp_path / "downloads" / "SERVER" / "20240101_P1_CT"
    result = file_into(target, staged, [hold])
    assert not hold.exists() and os.stat(target).st_ino == inode, "one rename of the folder"
    assert sorted(p.name for p in target.iterdir()) == ["1.dcm", "2.dcm", "3.dcm"]
    assert sorted(result.paths) == [target / "1.dcm", target / "2.dcm", target / "3.dcm"]
    assert result.bytes == 10 + 11 + 12


def test_the_hold_becomes_the_case_folder_and_the_last_part_follows_file_by_file(tmp_path):
    hold = tmp_path / "staging" / "hold"
    held = instances(hold, "1.dcm", "2.dcm")
    part = tmp_path / "staging" / "move-7"
    last = instances(part, "3.dcm") + [part / ".answered"]  # the receiver's folder keeps its ledger
    (part / ".answered").write_text("3.dcm\n")
    target = tmp_path / "downloads" / "case"
    result = file_into(target, held + last[:1], [hold])
    assert not hold.exists() and sorted(p.name for p in target.iterdir()) == ["1.dcm", "2.dcm", "3.dcm"]
    assert sorted(p.name for p in result.paths) == ["1.dcm", "2.dcm", "3.dcm"] and result.bytes == 10 + 11 + 10
    assert [p.name for p in part.iterdir()] == [".answered"], "a folder not named movable is never taken"


@pytest.mark.parametrize("extra", ["a file", "a folder"])
def test_a_folder_holding_more_than_the_study_is_filed_file_by_file(tmp_path, extra):
    source = tmp_path / "c-get"
    staged = instances(source, "1.dcm", "2.dcm")
    if extra == "a file":
        (source / ".answered").write_text("1.dcm\n2.dcm\n")
    else:
        (source / "foreign").mkdir()
    target = tmp_path / "case"
    file_into(target, staged, [source])
    assert source.is_dir() and len(list(source.iterdir())) == 1, "what is not the study's stays behind"
    assert sorted(p.name for p in target.iterdir()) == ["1.dcm", "2.dcm"]


def test_an_existing_case_folder_is_filed_into_and_keeps_what_it_had(tmp_path):
    source = tmp_path / "hold"
    staged = instances(source, "1.dcm")
    target = tmp_path / "case"
    target.mkdir()
    (target / "0.dcm").write_bytes(b"earlier")
    file_into(target, staged, [source])
    assert sorted(p.name for p in target.iterdir()) == ["0.dcm", "1.dcm"] and source.is_dir()


def test_a_case_folder_made_meanwhile_is_never_replaced(tmp_path):
    """A plain rename(2) replaces an empty folder: another row's case folder made between the check and the
    rename would vanish under its own files."""
    source, target = tmp_path / "hold", tmp_path / "case"
    instances(source, "1.dcm")
    target.mkdir()
    assert rename_new(source, target) is False
    assert source.is_dir() and target.is_dir() and list(target.iterdir()) == []


def test_a_failure_after_the_folder_was_taken_takes_the_whole_study_back_out(tmp_path):
    hold = tmp_path / "hold"
    held = instances(hold, "1.dcm", "2.dcm")
    target = tmp_path / "case"
    with pytest.raises(FilingFailed) as failed:
        file_into(target, held + [tmp_path / "gone" / "3.dcm"], [hold])
    assert not target.exists() and failed.value.stayed == [], "all or nothing, as file by file"


class RenameSpy:
    """The real rename_new, noting each (source, target, done)."""

    def __init__(self, monkeypatch):
        self.calls, self.real = [], rename_new
        monkeypatch.setattr(layout, "rename_new", self)

    def __call__(self, source, target):
        done = self.real(source, target)
        self.calls.append((Path(source), Path(target), done))
        return done
