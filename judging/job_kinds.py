"""The judging app's job kind: defined once here, registered once in judging/apps.py."""

JUDGE = "judging.judge"
