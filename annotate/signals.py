"""Signals annotate sends after commit; frontend listens to push live progress."""

from django.dispatch import Signal

# kwargs: assignment (the Assignment just voted)
vote_recorded = Signal()
