"""Signals annotate sends after commit; frontend listens to push live progress."""

from django.dispatch import Signal

# kwargs: assignment (the Assignment just voted); facts ({name: value} of VOTE_FACTS, below, where
# the vote's own statement evaluated them: PostgreSQL's path; absent or {} otherwise).
vote_recorded = Signal()

# Per-project lookups that vote_recorded receivers would otherwise run as one query each after
# every vote (is auto-retrain on? which webhooks are active?): name -> an SQL expression over
# the voted assignment's `a.project_id`, registered by the receiving app in its ready(). On
# PostgreSQL the vote's locking read evaluates them in the same statement (inside the vote's
# transaction, so they see what was committed before it) and the signal carries the values as
# `facts`; a receiver that finds no value under its name queries for itself, as on SQLite.
# Names and expressions are the apps' own code, never user input.
VOTE_FACTS: dict[str, str] = {}


def register_vote_fact(name: str, sql: str) -> None:
    if not name.isidentifier():
        raise ValueError(f"vote fact name must be an identifier: {name!r}")
    VOTE_FACTS[name] = sql
