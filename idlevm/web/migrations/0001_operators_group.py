"""The "operators" group: may edit rules and errors (idlevm/web/permissions.py)."""

from typing import Any

from django.db import migrations


def create_group(apps: Any, schema_editor: Any) -> None:
    from django.contrib.auth.management import create_permissions

    from idlevm.web.permissions import OPERATOR_PERMISSIONS, OPERATORS

    # Permissions are normally created after migrations; make sure they exist now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.get_or_create(name=OPERATORS)
    for name in OPERATOR_PERMISSIONS:
        app_label, codename = name.split(".")
        group.permissions.add(
            Permission.objects.get(content_type__app_label=app_label, codename=codename)
        )


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("inventory", "0002_cycle_steps_and_rule_errors"),
        ("rules", "0001_initial"),
    ]
    operations = [migrations.RunPython(create_group, migrations.RunPython.noop)]
