"""Is leadbot working? `leadbot status --check` answers for a supervisor (the container's
HEALTHCHECK, a monitoring probe): healthy while every Autumna account has been polled
successfully within `polling.alert_after`, in one line either way.
"""

from __future__ import annotations

from .claims import delay, minutes
from .config import Config
from .store import Store


def polling(store: Store, config: Config, now: float) -> tuple[bool, str]:
    """(healthy, one line saying why)."""
    limit = config.polling.alert_after.total_seconds()
    fine, wrong = [], []
    for account in config.accounts:
        state = store.poll_state(account.name)
        last = state["last_success"] if state else None
        if not last:
            error = f" (last error: {state['last_error']})" if state and state["last_error"] else ""
            wrong.append(f"account {account.name!r} has never been polled successfully{error}")
        elif now - last > limit:
            error = f"; last error: {state['last_error']}" if state and state["last_error"] else ""
            wrong.append(
                f"account {account.name!r} last polled successfully {minutes(now - last)} ago"
                f"{error}"
            )
        else:
            fine.append(f"{account.name} {_ago(now - last)} ago")
    if wrong:
        return False, (
            f"unhealthy: {'; '.join(wrong)} (polling.alert_after is {delay(limit)}; "
            "`leadbot status` shows more)"
        )
    return True, f"healthy: every account polled within {delay(limit)} ({', '.join(fine)})"


def _ago(seconds: float) -> str:
    return f"{max(0, round(seconds))} s" if seconds < 120 else minutes(seconds)
