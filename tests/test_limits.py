"""Rate limits and the retry schedule, as arithmetic: every time is passed in, nothing sleeps."""

from __future__ import annotations

import itertools
import random

import pytest

from bot.limits import RATES, Lane, Lanes, RetryPolicy, lane_of
from bot.models import Channel, Target

pytestmark = pytest.mark.timeout(10)

POLICY = RetryPolicy(first=30.0, cap=3600.0, give_up=24 * 3600.0)
START = 1_000_000.0  # a first attempt, in Unix seconds


def full_delay(attempts: int, policy: RetryPolicy = POLICY) -> float:
    """The un-jittered delay after `attempts` failures: first, 2×first, 4×first… up to cap."""
    return min(policy.cap, policy.first * 2.0 ** (attempts - 1))


def slack(address: str = "#rose-lodge") -> Target:
    return Target(Channel.SLACK, address, address)


def teams(address: str = "TEAMS_OPS_WEBHOOK") -> Target:
    return Target(Channel.TEAMS, address, address)


def email(address: str = "sales@rosecare.example") -> Target:
    return Target(Channel.EMAIL, address, address)


def send_as_fast_as_allowed(lane: Lane, start: float, count: int, took: float = 0.0) -> list[float]:
    """Drive a lane as the dispatcher does: wait until ready, take, send (taking `took`
    seconds), finish. Returns when each message left."""
    times, now = [], start
    for _ in range(count):
        now = lane.ready_at(now)
        lane.take(now)
        times.append(now)
        now += took
        lane.finished(now)
    return times


# --- RetryPolicy ---------------------------------------------------------------------------


@pytest.mark.parametrize("attempts", [*range(1, 13), 40])
def test_each_retry_waits_between_half_and_all_of_a_doubling_delay_capped_at_an_hour(
    attempts: int,
) -> None:
    rng = random.Random(attempts)
    full = full_delay(attempts)
    for _ in range(50):
        at = POLICY.next_attempt(attempts, START, START, rng=rng)
        assert at is not None
        assert full / 2 <= at - START <= full <= POLICY.cap


def test_the_first_retry_comes_after_half_to_all_of_first() -> None:
    rng = random.Random(1)
    delays = [
        POLICY.next_attempt(1, START, START, rng=rng) - START  # type: ignore[operator]
        for _ in range(400)
    ]
    assert 15.0 <= min(delays) < 16.0 and 29.0 < max(delays) <= 30.0  # the jitter is real


@pytest.mark.parametrize("seed", range(10))
def test_below_the_cap_each_delay_is_at_least_the_one_before(seed: int) -> None:
    # attempt n+1 waits at least half of 2×full(n), i.e. at least full(n): never less than n
    rng = random.Random(seed)
    delays = [
        POLICY.next_attempt(n, START, START, rng=rng) - START  # type: ignore[operator]
        for n in range(1, 8)
    ]  # full delays 30 s … 1920 s; the eighth is capped
    assert delays == sorted(delays)
    assert delays[6] >= 32 * delays[0]  # exponential, not linear


def test_the_same_seed_gives_the_same_schedule() -> None:
    first = [POLICY.next_attempt(n, START, START, rng=random.Random(3)) for n in range(1, 8)]
    again = [POLICY.next_attempt(n, START, START, rng=random.Random(3)) for n in range(1, 8)]
    assert first == again


@pytest.mark.parametrize("attempts", [30, 1023, 1100, 5000])
def test_even_after_very_many_attempts_the_delay_is_at_most_the_cap(attempts: int) -> None:
    # The attempt count is not bounded: a channel answering 429 with Retry-After 1 for hours
    # keeps adding attempts, and the next ordinary failure must still be scheduled.
    at = POLICY.next_attempt(attempts, START, START + 60, rng=random.Random(0))
    assert at is not None
    assert POLICY.cap / 2 <= at - (START + 60) <= POLICY.cap


@pytest.mark.parametrize(
    "elapsed, attempts",
    [(POLICY.give_up - 10, 1), (POLICY.give_up - 10, 12), (POLICY.give_up - 1800, 20)],
)
def test_no_retry_is_scheduled_later_than_the_give_up_time(elapsed: float, attempts: int) -> None:
    for seed in range(20):
        at = POLICY.next_attempt(attempts, START, START + elapsed, rng=random.Random(seed))
        assert at is not None
        assert START + elapsed < at <= START + POLICY.give_up


def test_a_retry_after_beyond_the_give_up_time_is_cut_to_it() -> None:
    now = START + POLICY.give_up - 5
    assert POLICY.next_attempt(3, START, now, retry_after=60) == START + POLICY.give_up


@pytest.mark.parametrize("elapsed", [POLICY.give_up, POLICY.give_up + 1, 10 * POLICY.give_up])
@pytest.mark.parametrize("retry_after", [None, 1.0])
def test_once_the_give_up_time_has_passed_there_is_no_next_attempt(
    elapsed: float, retry_after: float | None
) -> None:
    assert (
        POLICY.next_attempt(
            5, START, START + elapsed, retry_after=retry_after, rng=random.Random(0)
        )
        is None
    )


@pytest.mark.parametrize("retry_after", [1.0, 7.0, 120.0, 7200.0])
@pytest.mark.parametrize("attempts", [1, 6, 30])
def test_a_retry_after_is_honoured_exactly_with_no_jitter_and_no_cap(
    retry_after: float, attempts: int
) -> None:
    now = START + 100
    for seed in range(5):
        assert (
            POLICY.next_attempt(
                attempts, START, now, retry_after=retry_after, rng=random.Random(seed)
            )
            == now + retry_after
        )


def test_the_policy_follows_its_settings() -> None:
    quick = RetryPolicy(first=2.0, cap=10.0, give_up=100.0)
    rng = random.Random(5)
    delays = [quick.next_attempt(n, 0.0, 0.0, rng=rng) for n in (1, 2, 3, 4, 5)]
    assert [
        d is not None and full_delay(n, quick) / 2 <= d <= full_delay(n, quick)
        for n, d in zip((1, 2, 3, 4, 5), delays, strict=True)
    ] == [True] * 5
    assert max(d for d in delays if d is not None) <= 10.0
    assert quick.next_attempt(1, 0.0, 100.0, rng=rng) is None


# --- Lane: Slack ---------------------------------------------------------------------------


def test_a_fresh_slack_lane_allows_a_burst_of_three_then_one_a_second() -> None:
    lane = Lanes().get(slack())
    assert send_as_fast_as_allowed(lane, 100.0, 7) == [
        100.0,
        100.0,
        100.0,
        101.0,
        102.0,
        103.0,
        104.0,
    ]


def test_take_uses_a_slot_and_ready_at_says_when_the_next_one_is() -> None:
    lane = Lane(*RATES[Channel.SLACK])
    assert lane.ready_at(50.0) == 50.0
    for _ in range(3):
        lane.take(50.0)
    assert lane.ready_at(50.0) == pytest.approx(51.0)
    assert lane.ready_at(50.5) == pytest.approx(51.0)  # asking does not move it
    assert lane.ready_at(51.0) == pytest.approx(51.0)
    lane.take(51.0)
    assert lane.ready_at(51.0) == pytest.approx(52.0)


def test_an_idle_slack_lane_saves_up_a_burst_of_three_and_no_more() -> None:
    lane = Lane(*RATES[Channel.SLACK])
    send_as_fast_as_allowed(lane, 0.0, 5)
    assert send_as_fast_as_allowed(lane, 600.0, 5) == [600.0, 600.0, 600.0, 601.0, 602.0]


def test_a_429_blocks_the_lane_exactly_until_retry_after_then_one_goes() -> None:
    lane = Lane(*RATES[Channel.SLACK])
    lane.take(100.0)
    lane.finished(100.2)
    lane.throttled(100.2, 5.0)
    assert lane.ready_at(100.2) == pytest.approx(105.2)
    assert lane.ready_at(103.0) == pytest.approx(105.2)  # despite tokens left from the burst
    assert lane.ready_at(105.2) == pytest.approx(105.2)
    lane.take(105.2)
    lane.finished(105.2)
    assert lane.ready_at(105.2) == pytest.approx(106.2)


def test_after_a_429_the_lane_goes_at_the_steady_rate_with_no_burst() -> None:
    lane = Lane(*RATES[Channel.SLACK])
    lane.take(0.0)
    lane.finished(0.0)
    lane.throttled(0.0, 3.0)
    assert send_as_fast_as_allowed(lane, 0.0, 4) == pytest.approx([3.0, 4.0, 5.0, 6.0])
    # even after a long quiet spell, one at a time: no saved-up burst
    assert send_as_fast_as_allowed(lane, 100.0, 3) == pytest.approx([100.0, 101.0, 102.0])


def test_a_second_429_extends_the_block_and_an_earlier_retry_after_never_shortens_it() -> None:
    lane = Lane(*RATES[Channel.SLACK])
    lane.throttled(10.0, 30.0)
    lane.throttled(11.0, 2.0)  # a shorter answer to another request in flight
    assert lane.ready_at(12.0) == pytest.approx(40.0)


def test_the_pace_counts_from_when_a_send_came_back() -> None:
    """A steady lane (after a 429): a send that took 0.9 s does not let the next one follow
    0.1 s after it arrived; the next waits a whole interval from the completion."""
    lane = Lane(*RATES[Channel.SLACK])
    lane.throttled(0.0, 1.0)
    assert send_as_fast_as_allowed(lane, 0.0, 3, took=0.9) == pytest.approx([1.0, 2.9, 4.8])


def test_a_slow_send_on_a_teams_webhook_does_not_let_the_next_two_go_together() -> None:
    lane = Lanes().get(teams())
    times = send_as_fast_as_allowed(lane, 0.0, 3, took=0.9)
    arrivals = [t + 0.9 for t in times]  # the far side counts when requests arrive
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert min(gaps) >= 0.9 + 1 / RATES[Channel.TEAMS][0] - 1e-9


# --- Lane: Teams ---------------------------------------------------------------------------


@pytest.mark.parametrize("start", [0.0, START], ids=["t=0", "unix-time"])
def test_a_teams_lane_paces_under_four_a_second_with_no_burst(start: float) -> None:
    lane = Lanes().get(teams())
    times = send_as_fast_as_allowed(lane, start, 40)
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 1 / 4  # never two together, even at the start
    for t in times:  # Workflows count requests in any one-second window
        assert sum(1 for s in times if t - 1 < s <= t) <= 4
    assert times[-1] - times[0] > 39 / 4  # 40 requests take longer than 10 s at 4/s


def test_a_lane_whose_slot_was_just_used_up_is_not_mistaken_for_a_fresh_one() -> None:
    # Taking at the very moment ready_at names leaves the tokens at zero, give or take a
    # rounding error; either way the next message must wait a full interval.
    lane = Lane(*RATES[Channel.TEAMS])
    lane.take(0.0)
    ready = lane.ready_at(0.0)
    lane.take(ready)
    assert lane.ready_at(ready) >= ready + 1 / RATES[Channel.TEAMS][0] - 1e-9


def test_a_teams_429_holds_that_webhook_until_retry_after() -> None:
    lane = Lanes().get(teams())
    lane.take(0.0)
    lane.finished(0.1)
    lane.throttled(0.1, 2.0)
    assert lane.ready_at(1.0) == pytest.approx(2.1)


# --- lane_of and Lanes -------------------------------------------------------------------


@pytest.mark.parametrize(
    "a, b, same",
    [
        (email("sales@rosecare.example"), email("amira.khan@rosecare.example"), True),
        (slack("#rose-lodge"), slack("#willow-house"), False),
        (slack("#rose-lodge"), slack("U024BE7LH"), False),
        (teams("TEAMS_OPS_WEBHOOK"), teams("TEAMS_GROUP_WEBHOOK"), False),
        (slack("ops"), teams("ops"), False),
        (slack("#rose-lodge"), Target(Channel.SLACK, "#rose-lodge", "another-name"), True),
    ],
)
def test_all_email_shares_one_lane_and_each_slack_channel_or_teams_webhook_has_its_own(
    a: Target, b: Target, same: bool
) -> None:
    assert (lane_of(a) == lane_of(b)) is same
    lanes = Lanes()
    assert (lanes.get(a) is lanes.get(b)) is same


def test_a_429_on_one_lane_holds_up_no_other() -> None:
    lanes = Lanes()
    lanes.get(slack("#rose-lodge")).throttled(0.0, 60.0)
    assert lanes.get(slack("#rose-lodge")).ready_at(1.0) == 60.0
    assert lanes.get(slack("#willow-house")).ready_at(1.0) == 1.0
    assert lanes.get(teams()).ready_at(1.0) == 1.0
    assert lanes.get(email()).ready_at(1.0) == 1.0


def test_the_email_lane_has_no_rate_of_its_own() -> None:
    lane = Lanes().get(email())
    assert send_as_fast_as_allowed(lane, 0.0, 100) == [0.0] * 100
