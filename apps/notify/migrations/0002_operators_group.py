from django.db import migrations


def create_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.get_or_create(name="operators")


def remove_group(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name="operators", user__isnull=True).delete()


class Migration(migrations.Migration):
    """The group whose members get operator alerts (apps/notify/operators.py)."""

    dependencies = [("notify", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]

    operations = [migrations.RunPython(create_group, remove_group)]
