"""The training app's job kinds: each name defined once here, registered once in training/apps.py."""

SAMPLE_ROUND = "training.sample_round"
UPDATE_POLICY = "training.update_policy"
BUILD_POLICY = "training.build_policy"
