"""Echo jobs move from the generic jobs app to servers. Echo jobs are transient (a check of the PACS
connections), so their tables are recreated rather than kept (jobs 0003 drops the old ones); their
content types are renamed first, so the permissions groups hold on echo jobs stay theirs."""

import django.core.serializers.json
import django.db.models.deletion
import django.utils.timezone
from django.conf import settings
from django.db import migrations, models


def move_content_types(apps, schema_editor):
    content_types = apps.get_model("contenttypes", "ContentType")
    for model in ("echojob", "echoitem"):
        if not content_types.objects.filter(app_label="servers", model=model).exists():
            content_types.objects.filter(app_label="jobs", model=model).update(app_label="servers")


class Migration(migrations.Migration):

    dependencies = [
        ('servers', '0004_host_and_timeout_limits'),
        ('jobs', '0003_echo_jobs_move_to_servers'),
        ('contenttypes', '0002_remove_content_type_name'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.RunPython(move_content_types, migrations.RunPython.noop),
        migrations.CreateModel(
            name='EchoJob',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('partial', 'Partial'), ('canceled', 'Canceled')], db_index=True, default='pending', max_length=16)),
                ('created_at', models.DateTimeField(db_index=True, default=django.utils.timezone.now)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('completed_at', models.DateTimeField(blank=True, null=True)),
                ('description', models.CharField(blank=True, max_length=200)),
                ('cancel_requested', models.BooleanField(default=False)),
                ('created_by', models.ForeignKey(blank=True, null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'echo job',
                'ordering': ['-created_at', '-id'],
                'abstract': False,
            },
        ),
        migrations.CreateModel(
            name='EchoItem',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('status', models.CharField(choices=[('pending', 'Pending'), ('running', 'Running'), ('succeeded', 'Succeeded'), ('failed', 'Failed'), ('timed_out', 'Timed Out'), ('canceled', 'Canceled')], default='pending', max_length=16)),
                ('error', models.TextField(blank=True, help_text='Why the item failed, in words a user understands.')),
                ('attempts', models.PositiveIntegerField(default=0)),
                ('result', models.JSONField(blank=True, default=dict, encoder=django.core.serializers.json.DjangoJSONEncoder)),
                ('queued_at', models.DateTimeField(blank=True, help_text='When it was last put on the queue.', null=True)),
                ('started_at', models.DateTimeField(blank=True, null=True)),
                ('finished_at', models.DateTimeField(blank=True, null=True)),
                ('heartbeat_at', models.DateTimeField(blank=True, null=True)),
                ('worker', models.CharField(blank=True, help_text='host:pid of the worker running it.', max_length=100)),
                ('server_name', models.CharField(help_text='Kept so the item still reads well if the server goes.', max_length=32)),
                ('dicom_server', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to='servers.dicomserver')),
                ('job', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='items', to='servers.echojob')),
            ],
            options={
                'verbose_name': 'echo item',
                'ordering': ['id'],
                'abstract': False,
                'indexes': [models.Index(fields=['status', 'heartbeat_at'], name='servers_echoitem_lease')],
            },
        ),
    ]
