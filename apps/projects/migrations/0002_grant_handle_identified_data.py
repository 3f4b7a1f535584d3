"""Everyone who could start a retrieval, a send (or an inbox) or a delivery before projects existed keeps
doing so with identified data: the groups and users holding one of those permissions get "may handle
identified data". Accounts and groups made afterwards get it only when given."""
from django.contrib.auth.management import create_permissions
from django.db import migrations

STARTING = [("retrieval", "start_retrieval"), ("sending", "add_sendjob"), ("sending", "add_inbox"),
            ("delivery", "add_deliveryjob")]


def grant(apps, schema_editor):
    # Permissions are made after migrations run; make this app's now so the grant has a row to point to.
    config = apps.get_app_config("projects")
    config.models_module = True
    create_permissions(config, apps=apps, verbosity=0)
    config.models_module = None
    Permission = apps.get_model("auth", "Permission")
    Group = apps.get_model("auth", "Group")
    User = apps.get_model("auth", "User")
    handle = Permission.objects.get(content_type__app_label="projects", codename="handle_identified_data")
    starting = Permission.objects.none()
    for app_label, codename in STARTING:
        starting = starting | Permission.objects.filter(content_type__app_label=app_label, codename=codename)
    starting_ids = list(starting.values_list("pk", flat=True))
    if not starting_ids:
        return  # a new database: nobody to carry over
    for group in Group.objects.filter(permissions__in=starting_ids).distinct():
        group.permissions.add(handle)
    for user in User.objects.filter(user_permissions__in=starting_ids).distinct():
        user.user_permissions.add(handle)


class Migration(migrations.Migration):

    dependencies = [
        ("projects", "0001_projects_and_pseudonym_map"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("retrieval", "0003_start_retrieval_permission"),
        ("sending", "0001_initial"),
        ("delivery", "0001_initial"),
    ]

    operations = [migrations.RunPython(grant, migrations.RunPython.noop)]
