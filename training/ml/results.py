"""Result dataclasses of the policy engine, and the exception a stopped run raises."""

from __future__ import annotations

from dataclasses import dataclass, field


class TrainingStopped(Exception):
    """should_stop() answered True: the run ends without writing a policy folder."""


@dataclass
class PolicyBuildResult:
    path: str  # the saved policy folder
    metrics: dict  # steps, final loss, examples, seconds, parameters, ...


@dataclass
class UpdateResult:
    path: str  # the new policy folder
    metrics: dict  # method-specific run figures (see docs/training-engine.md)
    curve: list[dict] = field(default_factory=list)  # one entry per optimiser step / PPO update
