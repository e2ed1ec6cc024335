"""Finding claims without an app token: ask Slack about the unclaimed leads' messages.

For each message, `reactions.get` says who reacted and `conversations.replies` who answered in
its thread; the first person to use the claim reaction, or else the first person to reply,
claims the lead. Calls are paced per method (Slack's Tier 3 methods allow about 50 a minute), a
rate limit ends the round early, and a message Slack cannot show is skipped.

Scopes: reactions:read, and channels:history, groups:history and im:history for the threads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

from .claims import ClaimEvent
from .listener import is_person_reply, reaction_name, slack_failure

log = logging.getLogger(__name__)

SCOPES = {
    "reactions.get": "reactions:read",
    "conversations.replies": "channels:history, groups:history and im:history",
}
REPLIES = 20  # a thread's first replies are enough: the first person wins
# Errors about the message itself: look at the next one.
_GONE = ("message_not_found", "channel_not_found", "thread_not_found", "not_in_channel")


class _StopRound(Exception):
    """Slack wants no more calls this round (a rate limit, a bad token, no connection)."""


class _Skip(Exception):
    """Slack cannot show this message (deleted, or in a channel the bot left)."""


class Watcher:
    """Asks Slack, round after round, whether anyone claimed a lead's messages.

    Keep one per run: it remembers when each method was last called (pacing spans rounds)
    and which errors it has already logged. `bot_user` is the bot's own user id (auth.test's
    user_id): its reactions and replies never count.
    """

    def __init__(
        self,
        client: WebClient,
        reaction: str,
        bot_user: str,
        *,
        pace: float = 1.2,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], object] | None = None,
    ) -> None:
        if not bot_user:
            raise ValueError("bot_user: the bot's own user id is needed to ignore its reactions")
        self.client = client
        self.reaction = reaction_name(reaction)
        self.bot_user = bot_user
        self.pace = pace
        self._clock = clock
        self._sleep = sleep
        self._next_call: dict[str, float] = {}  # method -> earliest time for its next call
        self._logged: set[tuple[str, str]] = set()

    def check(
        self, messages: Iterable[tuple[str, str, str]], stop: threading.Event
    ) -> list[ClaimEvent]:
        """Claims found on these (lead key, channel id, ts) messages, at most one per message.

        A claim by reaction is dated now (Slack does not say when a reaction was added); one by
        reply is dated by the reply itself. Ends early when `stop` is set or Slack rate-limits
        a call: what was found so far is returned, and the next round waits as Slack asked.
        """
        found: list[ClaimEvent] = []
        try:
            for lead, channel, ts in messages:
                if stop.is_set():
                    break
                try:
                    event = self._reaction(lead, channel, ts, stop) or self._reply(
                        lead, channel, ts, stop
                    )
                except _Skip:
                    continue
                if event is not None:
                    found.append(event)
        except _StopRound:
            pass
        return found

    def _reaction(
        self, lead: str, channel: str, ts: str, stop: threading.Event
    ) -> ClaimEvent | None:
        answer = self._call("reactions.get", stop, channel=channel, timestamp=ts, full=True)
        if answer is None:
            return None
        for reaction in answer.get("message", {}).get("reactions", []):
            if reaction_name(str(reaction.get("name", ""))) != self.reaction:
                continue
            person = next((u for u in reaction.get("users", []) if u != self.bot_user), None)
            if person:
                return ClaimEvent(
                    via="slack-reaction",
                    by_name=person,
                    by_id=person,
                    lead=lead,
                    channel=channel,
                    ts=ts,
                    at=self._clock(),
                )
        return None

    def _reply(self, lead: str, channel: str, ts: str, stop: threading.Event) -> ClaimEvent | None:
        answer = self._call("conversations.replies", stop, channel=channel, ts=ts, limit=REPLIES)
        if answer is None:
            return None
        for message in answer.get("messages", []):
            if message.get("thread_ts") == ts and is_person_reply(message, self.bot_user):
                user = str(message["user"])
                return ClaimEvent(
                    via="slack-reply",
                    by_name=user,
                    by_id=user,
                    lead=lead,
                    channel=channel,
                    ts=ts,
                    at=float(message["ts"]),  # the reply's own time: when it was claimed
                )
        return None

    def _call(self, method: str, stop: threading.Event, **args: Any) -> dict[str, Any] | None:
        """One paced call; None without the scope for it. Errors are logged once per kind."""
        wait = self._next_call.get(method, 0.0) - self._clock()
        if wait > 0:
            (self._sleep or stop.wait)(wait)
        if stop.is_set():
            raise _StopRound
        self._next_call[method] = self._clock() + self.pace
        try:
            data = self.client.api_call(method, http_verb="GET", params=args).data
        except Exception as exc:
            reason, retry_after = slack_failure(exc)
            if reason == "ratelimited":
                self._next_call[method] = self._clock() + max(self.pace, retry_after or 0.0)
                text = f"Slack rate-limited {method}; going on next round"
                self._once(method, reason, text, logging.INFO)
                raise _StopRound from None
            if reason in _GONE:
                self._once(method, reason, f"{method} answered {reason}; skipping the message")
                raise _Skip from None
            if reason == "missing_scope":
                needed = exc.response.get("needed") if isinstance(exc, SlackApiError) else None
                scope = needed or SCOPES[method]
                self._once(
                    method,
                    reason,
                    f"{method} needs the scope {scope}: add it to the Slack app and reinstall it",
                )
                return None
            self._once(method, reason, f"{method} failed ({reason}); trying again next round")
            raise _StopRound from None
        return data if isinstance(data, dict) else {}

    def _once(self, method: str, reason: str, text: str, level: int = logging.WARNING) -> None:
        if (method, reason) in self._logged:
            level = logging.DEBUG
        self._logged.add((method, reason))
        log.log(level, "looking for claims in Slack: %s", text)
