from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("rewards", "0001_initial")]

    operations = [
        migrations.AddField(
            model_name="rewardsettings",
            name="held_out_split",
            field=models.JSONField(
                blank=True,
                default=dict,
                help_text="The project's fixed held-out split ({method, salt, fraction, fixed_by_version}); set by the "
                "first training run and never changed, so every version is measured on the same prompts.",
            ),
        )
    ]
