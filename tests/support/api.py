"""The recommender API over HTTP, as its clients use it."""

from __future__ import annotations

from typing import Any

import requests

from .waiting import wait_until


def wait_for_user_answer(api: str, user: str, timeout_s: float, *,
                         interval_s: float = 0.05) -> dict[str, Any]:
    """The first ``/recommend`` answer for ``user`` that is ``based_on: user``: the user's
    events have reached the model and the user store. Fails with the last answer seen."""
    last: dict[str, Any] = {}

    def answer() -> dict[str, Any] | None:
        last.clear()
        last.update(requests.get(f"{api}/recommend", params={"user_id": user},
                                 timeout=5).json())
        return dict(last) if last.get("based_on") == "user" else None

    return wait_until(answer, f"{user}'s events to reach the model", timeout_s,
                      interval_s=interval_s, detail=lambda: f"last answer: {last}")
