"""When the next attempt runs: the schedule with jitter, Retry-After clamped, throttles held back."""

from __future__ import annotations

import random

from .sender import Outcome
from .settings import DeliverySettings


def attempts_allowed(settings: DeliverySettings, max_retries: int | None) -> int:
    return len(settings.schedule) if max_retries is None else max_retries + 1


def next_delay(
    settings: DeliverySettings, made: int, max_retries: int | None, outcome: Outcome, rng: random.Random | None = None
) -> float | None:
    """Seconds until attempt ``made + 1``, or None when the retries are used up.

    The scheduled delay varies by ±``jitter``; a Retry-After is honoured but clamped to
    [scheduled, 2 × scheduled]; a timeout or a 429 waits at least ``throttle_min``.
    """
    if made >= attempts_allowed(settings, max_retries):
        return None
    scheduled = settings.schedule[min(made, len(settings.schedule) - 1)]
    spread = settings.jitter * scheduled
    delay = scheduled + (rng or random).uniform(-spread, spread) if spread else scheduled
    if outcome.retry_after is not None:
        delay = min(max(outcome.retry_after, scheduled), 2 * scheduled)
    if outcome.throttled:
        delay = max(delay, settings.throttle_min)
    return delay
