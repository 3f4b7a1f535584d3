"""Server names become unique without regard to case ('orth' next to 'ORTH' let a case list naming one
reach the other). Existing clashes are not merged silently: the migration stops and names them."""
import django.db.models.functions.text
from django.db import migrations, models


def refuse_name_clashes(apps, schema_editor):
    DicomServer = apps.get_model("servers", "DicomServer")
    by_lower: dict[str, list[str]] = {}
    for name in DicomServer.objects.order_by("name").values_list("name", flat=True):
        by_lower.setdefault(name.lower(), []).append(name)
    clashes = [names for names in by_lower.values() if len(names) > 1]
    if clashes:
        listed = "; ".join(" and ".join(f"'{n}'" for n in names) for names in clashes)
        raise RuntimeError(
            f"DICOM server names must be unique without regard to case, and these differ only by case: {listed}. "
            "Rename or delete all but one of each (admin or /api/servers/), then run migrate again.")


class Migration(migrations.Migration):

    dependencies = [("servers", "0002_server_access")]

    operations = [
        migrations.RunPython(refuse_name_clashes, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="dicomserver",
            constraint=models.UniqueConstraint(
                django.db.models.functions.text.Lower("name"), name="servers_dicomserver_name_ci_unique",
                violation_error_message="A server with this name already exists (names are compared without "
                                        "regard to case: 'orth' and 'ORTH' are the same server)."),
        ),
    ]
