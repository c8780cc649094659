"""The "operators" group: may edit rules and errors (idlevm/web/permissions.py)."""

from typing import Any

from django.db import migrations


def create_group(apps: Any, schema_editor: Any) -> None:
    from django.contrib.auth.management import create_permissions

    from idlevm.web.permissions import operators_group

    # Permissions are normally created after migrations; make sure they exist now.
    for config in apps.get_app_configs():
        config.models_module = True
        create_permissions(config, apps=apps, verbosity=0)
        config.models_module = None
    operators_group(apps.get_model("auth", "Group"), apps.get_model("auth", "Permission"))


class Migration(migrations.Migration):
    dependencies = [
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
        ("inventory", "0002_cycle_steps_and_rule_errors"),
        ("rules", "0001_initial"),
    ]
    operations = [migrations.RunPython(create_group, migrations.RunPython.noop)]
