"""Writing many small rows with one statement run for every row (executemany). The ORM's bulk_create
builds a model and compiles every field of every row into one long statement, which costs more than the
writes it makes when a job records thousands of rows (an import's files, their catalog entries)."""
from __future__ import annotations

from collections.abc import Iterable

from django.db import IntegrityError, connections, models, router, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models.constants import OnConflict
from django.db.models.fields import AutoFieldMixin
from django.utils import timezone

# (field class, the type of value it hands to the database as it is): a text as text, a number as a number.
# Such values skip get_db_prep_save, whose calls took more of a catalog write's time than SQLite did (a
# retrieval catalogues every file it files, 28 fields each).
_AS_IS = ((models.CharField, str), (models.TextField, str), (models.IntegerField, int))


def insert_rows(model, rows: Iterable[dict], *, unique_fields: tuple[str, ...] = (),
                update_fields: tuple[str, ...] = ()) -> int:
    """INSERT a row per dict of field attnames (`owner_id`, not `owner`) to values; a field a dict leaves
    out takes its default (auto_now fields: now). With `unique_fields` and `update_fields`, a row whose
    unique key exists updates those fields instead. Returns how many rows were written. Callers wrap it in
    their transaction."""
    rows = list(rows)
    if not rows:
        return 0
    connection = connections[router.db_for_write(model)]
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    now = timezone.now()
    fixed = {f.attname: now for f in fields if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)}
    per_row = {f.attname: f for f in fields if f.has_default() and callable(f.default) and f.attname not in fixed}
    fixed |= {f.attname: f.get_default() for f in fields if f.attname not in fixed and f.attname not in per_row}
    quote = connection.ops.quote_name
    sql = (f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
           f"VALUES ({', '.join(['%s'] * len(fields))})")
    upsert = None
    if unique_fields:
        upsert = sql + " " + connection.ops.on_conflict_suffix_sql(
            fields, OnConflict.UPDATE, [model._meta.get_field(name).column for name in update_fields],
            [model._meta.get_field(name).column for name in unique_fields])
    prepared = {f.attname: f.get_db_prep_save(fixed[f.attname], connection) for f in fields if f.attname in fixed}
    plan = [(f, f.attname, _as_is(f, connection), f.attname in per_row) for f in fields]
    params = []
    for given in rows:
        row = []
        for field, name, kind, default_per_row in plan:
            if name in given:
                value = given[name]
                row.append(value if type(value) is kind else field.get_db_prep_save(value, connection))
            elif default_per_row:
                row.append(field.get_db_prep_save(field.get_default(), connection))
            else:
                row.append(prepared[name])  # the same for every row: converted once
        params.append(row)
    with connection.cursor() as cursor:
        if upsert is None:
            cursor.executemany(sql, params)
        else:
            # Most rows are new (a study just filed): plain INSERTs cost SQLite well under half as much as
            # upserts (a catalog row: 55 against 140 us, 2,000 rows). Only when a row's key exists already
            # is the batch written again, as upserts, from the savepoint before it.
            try:
                with transaction.atomic(using=connection.alias):
                    cursor.executemany(sql, params)
            except IntegrityError:
                cursor.executemany(upsert, params)
    return len(params)


def _as_is(field, connection) -> type | None:
    """The type of value `field` hands to the database unconverted, or None (see _AS_IS): only for the
    stock conversions, on a backend that adapts integers as they are."""
    kind = type(field)
    if isinstance(field, models.ForeignKey):
        return _key_as_is(field, connection)
    for base, python_type in _AS_IS:
        if isinstance(field, base) and kind.get_prep_value is base.get_prep_value and \
                kind.get_db_prep_value is base.get_db_prep_value and kind.get_db_prep_save is models.Field.get_db_prep_save:
            if base is models.IntegerField and type(connection.ops).adapt_integerfield_value is not \
                    BaseDatabaseOperations.adapt_integerfield_value:
                return None
            return python_type
    return None


def _key_as_is(field, connection) -> type | None:
    """int for a foreign key to an automatic primary key, with the stock conversions: the key hands an
    integer to its target, which gives it back as it is unless the backend checks such keys (MySQL refuses
    0). An import writes nine such keys per image (~3.5 us each through the conversions)."""
    target = field.target_field
    if (type(field).get_db_prep_save is models.ForeignKey.get_db_prep_save
            and isinstance(target, AutoFieldMixin) and isinstance(target, models.IntegerField)
            and type(target).get_db_prep_save is models.Field.get_db_prep_save
            and type(target).get_db_prep_value is AutoFieldMixin.get_db_prep_value
            and type(target).get_prep_value is models.IntegerField.get_prep_value
            and type(connection.ops).validate_autopk_value is BaseDatabaseOperations.validate_autopk_value):
        return int
    return None


def field_values(obj) -> dict:
    """A model instance's values as insert_rows takes them (every concrete field but the primary key)."""
    return {f.attname: getattr(obj, f.attname) for f in obj._meta.concrete_fields if not f.primary_key}
