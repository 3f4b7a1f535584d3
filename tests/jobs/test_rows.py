"""apps/jobs/rows.py: many rows in one statement run per row, with what bulk_create would have given them
(defaults, a callable default called for every row, auto_now) and the upsert on a unique key."""
from pathlib import Path

import pytest
from django.db import IntegrityError, transaction

from apps.catalog.models import Instance
from apps.imports.models import ImportJob, KnownFile
from apps.jobs.rows import insert_rows


def test_rows_get_their_defaults_and_a_callable_default_per_row(db):
    with transaction.atomic():
        assert insert_rows(ImportJob, [{"source_path": "/a"}, {"source_path": "/b", "description": "given"}]) == 2
    jobs = list(ImportJob.objects.order_by("source_path"))
    assert [(j.source_path, j.description, j.status) for j in jobs] == [("/a", "", "pending"), ("/b", "given", "pending")]
    assert len({j.task_id for j in jobs}) == 2 and all(j.task_id and j.created_at for j in jobs)
    assert insert_rows(ImportJob, []) == 0


def test_a_row_whose_key_exists_updates_only_the_fields_named(db):
    entry = {"study_instance_uid": "1.2", "series_instance_uid": "1.2.3", "sop_instance_uid": "1.2.3.4",
             "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "patient_id": "P1", "size": 10}
    insert_rows(Instance, [{"path": "/x/1.dcm", "source": "imported", **entry}])
    first = Instance.objects.get()
    assert (first.patient_id, first.size, first.rows, first.frames, first.filed_at is not None) == ("P1", 10, 0, 1, True)
    insert_rows(Instance, [{"path": "/x/1.dcm", "source": "retrieved", **entry, "patient_id": "P2", "size": 20},
                           {"path": "/x/2.dcm", "source": "retrieved", **entry}],
                unique_fields=("path",), update_fields=("size", "source"))
    rows = {row.path: row for row in Instance.objects.all()}
    assert (rows["/x/1.dcm"].pk, rows["/x/1.dcm"].size, rows["/x/1.dcm"].source) == (first.pk, 20, "retrieved")
    assert rows["/x/1.dcm"].patient_id == "P1"  # not named: kept
    assert rows["/x/2.dcm"].patient_id == "P1" and len(rows) == 2
    insert_rows(KnownFile, [{"path": "/k", "size": 1, "mtime_ns": 2}])
    insert_rows(KnownFile, [{"path": "/k", "size": 3, "mtime_ns": 4, "failure": "bad"}], unique_fields=("path",),
                update_fields=("size", "mtime_ns", "failure"))
    assert KnownFile.objects.values_list("path", "size", "mtime_ns", "failure").get() == ("/k", 3, 4, "bad")


def test_a_batch_with_an_existing_key_in_its_middle_is_written_whole_once_and_keeps_what_came_before(db):
    # New rows go in as plain INSERTs; the first existing key rolls the batch back to its savepoint and the
    # whole batch is written as upserts: the rows inserted before it are not there twice, and what the
    # caller's transaction wrote before the batch stays.
    entry = {"study_instance_uid": "1.2", "series_instance_uid": "1.2.3", "sop_instance_uid": "1.2.3.4",
             "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "patient_id": "P1", "size": 10}
    insert_rows(Instance, [{"path": "/x/5.dcm", "source": "imported", **entry}])
    with transaction.atomic():
        insert_rows(KnownFile, [{"path": "/before", "size": 1, "mtime_ns": 1}])
        batch = [{"path": f"/x/{n}.dcm", "source": "retrieved", **entry, "size": 100 + n} for n in range(10)]
        assert insert_rows(Instance, batch, unique_fields=("path",), update_fields=("size", "source")) == 10
    rows = {row.path: (row.size, row.source) for row in Instance.objects.all()}
    assert rows == {f"/x/{n}.dcm": (100 + n, "retrieved") for n in range(10)}
    assert Instance.objects.count() == 10 and KnownFile.objects.filter(path="/before").exists()


def test_a_row_breaking_another_constraint_still_fails_the_batch(db):
    with pytest.raises(IntegrityError), transaction.atomic():
        insert_rows(KnownFile, [{"path": "/k1", "size": 1, "mtime_ns": 1}, {"path": "/k2", "size": None, "mtime_ns": 1}],
                    unique_fields=("path",), update_fields=("size",))
    assert not KnownFile.objects.exists()


def test_values_of_another_type_are_still_converted_as_the_orm_converts_them(db):
    """Text and numbers of their field's own type go to SQLite unconverted; anything else (a number for a
    text, a text or a float for a number, a model for a key, a date) still takes the ORM's conversion."""
    from django.contrib.auth import get_user_model

    owner = get_user_model().objects.create(username="owner")
    entry = {"study_instance_uid": "1.2", "series_instance_uid": "1.2.3", "sop_instance_uid": 1234,
             "sop_class_uid": "1.2.840.10008.5.1.4.1.1.2", "rows": "512", "columns": 512.0, "size": 10,
             "owner_id": owner.pk}
    insert_rows(Instance, [{"path": "/x/1.dcm", "source": "imported", **entry}])
    row = Instance.objects.get()
    assert (row.sop_instance_uid, row.rows, row.columns, row.size, row.owner_id) == ("1234", 512, 512, 10, owner.pk)
    assert Instance.objects.filter(rows=512, columns=512, sop_instance_uid="1234").count() == 1
    assert type(Instance.objects.values_list("rows", flat=True).get()) is int


def test_values_of_another_type_still_go_through_their_field(db):
    """A str for a CharField and an int for an IntegerField are written as they are; anything else the
    field converts, as the ORM would."""
    insert_rows(KnownFile, [{"path": Path("/p/1.dcm"), "size": "5", "mtime_ns": 6.0, "failure": "plain"}])
    row = KnownFile.objects.get()
    assert (row.path, row.size, row.mtime_ns, row.failure) == ("/p/1.dcm", 5, 6, "plain")
    assert KnownFile.objects.filter(path="/p/1.dcm", size=5, mtime_ns=6).exists()  # stored as text and integers


def test_foreign_keys_go_in_as_integers_and_other_values_through_their_conversions(db):
    # An integer key to an automatic primary key skips the conversions (apps/jobs/rows.py _key_as_is); None
    # and a key given as text still go through them, to NULL and to the integer.
    from apps.imports.models import ImportedPatient

    patients = [ImportedPatient.objects.create(patient_id=f"P{n}") for n in range(2)]
    with transaction.atomic():
        insert_rows(KnownFile, [{"path": "/int", "size": 1, "mtime_ns": 1, "patient_id": patients[0].pk},
                                {"path": "/none", "size": 1, "mtime_ns": 1, "patient_id": None},
                                {"path": "/text", "size": 1, "mtime_ns": 1, "patient_id": str(patients[1].pk)}])
    assert dict(KnownFile.objects.values_list("path", "patient_id")) == {
        "/int": patients[0].pk, "/none": None, "/text": patients[1].pk}
    assert KnownFile.objects.filter(patient=patients[1]).get().path == "/text"  # stored as an integer, not text
