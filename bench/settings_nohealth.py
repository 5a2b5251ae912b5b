"""Experiment settings for bench/vote_loop.py: the normal settings without the per-request SELECT 1."""
from prefloop.settings import *  # noqa: F401,F403
from prefloop.settings import DATABASES

DATABASES["default"]["CONN_HEALTH_CHECKS"] = False
