from django.apps import AppConfig


class TrainingConfig(AppConfig):
    name = "training"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate.signals import vote_recorded
        from prefloop.jobs.registry import TRAINING_QUEUE, register_job_kind
        from prefloop.jobs.signals import job_finished
        from training.job_kinds import BUILD_POLICY, SAMPLE_ROUND, UPDATE_POLICY
        from training.receivers import advance_when_round_complete, on_job_finished

        # By dotted path: torch is imported only when a job runs. Sampling (and its scoring) is short
        # and stays on "default"; policy training runs on the training queue (docs/jobs.md).
        register_job_kind(SAMPLE_ROUND, "training.tasks.sample_round")
        register_job_kind(UPDATE_POLICY, "training.tasks.update_policy", queue=TRAINING_QUEUE)
        register_job_kind(BUILD_POLICY, "training.tasks.build_policy", queue=TRAINING_QUEUE)
        job_finished.connect(on_job_finished, dispatch_uid="training.job_finished")
        vote_recorded.connect(advance_when_round_complete, dispatch_uid="training.advance")
