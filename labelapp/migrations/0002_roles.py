"""Create the two roles as groups with their model permissions."""

from django.db import migrations

ADMIN_MODELS = [
    "dataset", "case", "event", "patterntag", "iteration", "modelversion", "batchitem", "label",
    "auditevent",
]
EXPERT_PERMS = [
    ("view", "dataset"), ("view", "case"), ("view", "event"), ("view", "patterntag"),
    ("view", "batchitem"), ("add", "label"), ("view", "label"), ("view", "iteration"),
    ("view", "modelversion"),
]


def create_roles(apps, schema_editor):
    from django.contrib.auth.management import create_permissions

    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    admin, _ = Group.objects.get_or_create(name="admin")
    admin.permissions.set(
        Permission.objects.filter(content_type__app_label="labelapp", content_type__model__in=ADMIN_MODELS)
    )
    expert, _ = Group.objects.get_or_create(name="expert")
    expert.permissions.set(
        [
            Permission.objects.get(content_type__app_label="labelapp", codename=f"{action}_{model}")
            for action, model in EXPERT_PERMS
        ]
    )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=["admin", "expert"]).delete()


class Migration(migrations.Migration):
    dependencies = [("labelapp", "0001_initial"), ("auth", "0012_alter_user_first_name_max_length")]
    operations = [migrations.RunPython(create_roles, remove_roles)]
