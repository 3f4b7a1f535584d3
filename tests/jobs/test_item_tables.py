"""What every app's item table must have, checked over every concrete JobItem subclass the project
has (so a new app is covered without touching this file): the lease index every reclaim sweep queries,
in the migrated database, and a processor registered with the runner."""
import pytest
from django.apps import apps
from django.db import connection

from apps.jobs import registry
from apps.jobs.models import JobItem

ITEM_MODELS = [m for m in apps.get_models() if issubclass(m, JobItem)]


def test_the_item_models_are_all_found():
    assert {m._meta.label for m in ITEM_MODELS} >= {
        "retrieval.RetrievalItem", "servers.EchoItem", "sending.SendItem", "imports.ImportItem",
        "delivery.DeliveryBatch", "photos.PhotoSend"}


@pytest.mark.django_db
@pytest.mark.parametrize("model", ITEM_MODELS, ids=lambda m: m._meta.label)
def test_every_item_table_has_the_lease_index(model):
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, model._meta.db_table)
    leases = [name for name, c in constraints.items() if c["index"] and c["columns"] == ["status", "heartbeat_at"]]
    assert leases, f"{model._meta.db_table} has no (status, heartbeat_at) index: {sorted(constraints)}"


@pytest.mark.parametrize("model", ITEM_MODELS, ids=lambda m: m._meta.label)
def test_every_item_model_has_a_registered_processor(model):
    assert callable(registry.processor_for(model))


def test_an_unregistered_item_model_is_named_in_the_error(monkeypatch):
    monkeypatch.delitem(registry.PROCESSORS, "servers.EchoItem")
    with pytest.raises(LookupError, match="servers.EchoItem"):
        registry.processor_for(apps.get_model("servers", "EchoItem"))
