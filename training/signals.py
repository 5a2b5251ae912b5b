"""Signals of the training app (sent by training.services)."""

from django.dispatch import Signal

# sender=Round, round=<Round, already in its new state>, previous=<the state it left>.
# Sent by training.services._transition, the one place a round's state changes; inside the
# transition's transaction, so a receiver that acts outside the database waits for the commit.
round_state_changed = Signal()
