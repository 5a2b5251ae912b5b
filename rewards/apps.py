from django.apps import AppConfig


class RewardsConfig(AppConfig):
    name = "rewards"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from annotate.signals import register_vote_fact, vote_recorded
        from prefloop.jobs.registry import TRAINING_QUEUE, register_job_kind
        from prefloop.jobs.signals import job_finished
        from rewards.job_kinds import IMPORT_REWARD_MODEL, TRAIN_REWARD_MODEL
        from rewards.receivers import auto_retrain_fact, fail_versions_of_failed_jobs, retrain_when_round_completes

        # By dotted path: the handler (and torch) is imported only when a job runs.
        register_job_kind(TRAIN_REWARD_MODEL, "rewards.tasks.train_reward_model", queue=TRAINING_QUEUE)
        register_job_kind(IMPORT_REWARD_MODEL, "rewards.tasks.import_reward_model")
        vote_recorded.connect(retrain_when_round_completes, dispatch_uid="rewards.auto_retrain")
        register_vote_fact("auto_retrain", auto_retrain_fact())
        job_finished.connect(fail_versions_of_failed_jobs, dispatch_uid="rewards.fail_versions")
