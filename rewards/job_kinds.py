"""The rewards app's job kinds: each name defined once here, registered once in rewards/apps.py."""

TRAIN_REWARD_MODEL = "train_reward_model"
IMPORT_REWARD_MODEL = "rewards.import_reward_model"
