from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("labelapp", "0005_hidden_checks"),
        ("labelapp", "0005_seeds_explorer"),
    ]

    operations = []
