"""How fast and how often: per-destination rate limits and the retry schedule.

Pure arithmetic on times passed in, so it is tested without sleeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from .models import Channel, Target

# Slack allows about one message per second per channel, with short bursts
# (api.slack.com/apis/rate-limits#posting-messages); Workflows webhooks throttle above about four
# requests per second. Email shares one SMTP connection, so it is one lane with no rate of its own.
RATES: dict[Channel, tuple[float, float]] = {  # messages per second, burst
    Channel.SLACK: (1.0, 3.0),
    Channel.TEAMS: (3.8, 1.0),  # Workflows throttle above 4 requests in any second
    Channel.EMAIL: (1000.0, 1000.0),
}


def lane_of(target: Target) -> str:
    """Messages in one lane go one at a time, in order; lanes never wait for each other."""
    return "email" if target.channel is Channel.EMAIL else target.key


@dataclass
class Lane:
    rate: float
    burst: float
    tokens: float = 0.0
    stamp: float | None = None  # None: never used, so the first burst is there in full
    blocked_until: float = 0.0  # set by a 429's Retry-After: this lane only
    busy: bool = False  # a send is in flight

    def ready_at(self, now: float) -> float:
        """When the next message may go (now, or later)."""
        self._refill(now)
        at_rate = now if self.tokens >= 1 else now + (1 - self.tokens) / self.rate
        return max(at_rate, self.blocked_until)

    def take(self, now: float) -> None:
        self._refill(now)
        self.tokens -= 1

    def finished(self, now: float) -> None:
        """A send came back. The pace counts from here, not from when it left: the far side
        counts arrivals, and one slow request must not let the next two arrive together."""
        self.busy = False
        self.stamp = now if self.stamp is None else max(self.stamp, now)

    def throttled(self, now: float, retry_after: float) -> None:
        """The far side said 429: honour Retry-After, send one then, and go on at the steady
        rate with no more bursts."""
        self.blocked_until = max(self.blocked_until, now + retry_after)
        self.tokens, self.stamp, self.burst = 1.0, self.blocked_until, 1.0

    def _refill(self, now: float) -> None:
        if self.stamp is None:
            self.tokens, self.stamp = self.burst, now
        elif now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now


@dataclass
class Lanes:
    rates: dict[Channel, tuple[float, float]] = field(default_factory=lambda: dict(RATES))
    lanes: dict[str, Lane] = field(default_factory=dict)

    def get(self, target: Target) -> Lane:
        name = lane_of(target)
        if name not in self.lanes:
            self.lanes[name] = Lane(*self.rates[target.channel])
        return self.lanes[name]


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter: 30 s, 1 min, 2 min … up to an hour apart, giving up 24 h
    after the first attempt."""

    first: float = 30.0
    cap: float = 3600.0
    give_up: float = 24 * 3600.0

    def next_attempt(
        self,
        attempts: int,
        first_attempt_at: float,
        now: float,
        retry_after: float | None = None,
        rng: random.Random | None = None,
    ) -> float | None:
        """When to try again after `attempts` failed tries; None means give up."""
        if now - first_attempt_at >= self.give_up:
            return None
        if retry_after is not None:
            delay = retry_after
        else:
            full = min(self.cap, self.first * 2 ** min(max(0, attempts - 1), 40))
            delay = full / 2 + (rng or random).uniform(0, full / 2)  # "equal jitter"
        return min(now + delay, first_attempt_at + self.give_up)
