"""Prompts as conversations (Prompt.messages, backfilled from text) and a per-project system prompt."""

from django.db import migrations, models

BATCH = 2000


def backfill_messages(apps, schema_editor):
    """HH prompts become their turns; every other prompt one user turn of its text."""
    from annotate.services.importing.adapters import hh_turns

    Prompt = apps.get_model("annotate", "Prompt")
    pending = Prompt.objects.order_by("pk")  # all rows: the field was just added, empty everywhere
    last = 0
    while True:
        rows = list(pending.filter(pk__gt=last)[:BATCH])
        if not rows:
            return
        for prompt in rows:
            hh = (prompt.metadata or {}).get("format") == "hh"
            prompt.messages = hh_turns(prompt.text) if hh else [{"role": "user", "content": prompt.text}]
        Prompt.objects.bulk_update(rows, ["messages"])
        last = rows[-1].pk


class Migration(migrations.Migration):
    dependencies = [("annotate", "0002_gold_checks")]

    operations = [
        migrations.AddField(
            model_name="prompt",
            name="messages",
            field=models.JSONField(
                blank=True,
                default=list,
                help_text='The prompt as a conversation: [{"role": "user"|"assistant"|"system", "content": ...}]; empty: one user turn of text.',
            ),
        ),
        migrations.AddField(
            model_name="project",
            name="system_prompt",
            field=models.TextField(
                blank=True,
                max_length=8000,
                help_text="Put before every prompt as a system turn when a policy or reward model renders it (blank: none).",
            ),
        ),
        migrations.RunPython(backfill_messages, migrations.RunPython.noop),
    ]
