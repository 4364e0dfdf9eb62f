"""Following a job over HTTP until it ends, as a client would (no fixed sleeps to guess by)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

POLL_S = 0.05


async def job_done(client: Any, link: str, timeout_s: float = 600.0) -> tuple[dict, list[float]]:
    """(the job's final state, every progress value seen) of the job at `link`."""
    seen: list[float] = []
    deadline = time.monotonic() + timeout_s
    while True:
        state = await (await client.get(link)).json()
        seen.append(state["progress"])
        if state["status"] in ("done", "failed"):
            return state, seen
        assert time.monotonic() < deadline, f"job {link} did not finish: {state}"
        await asyncio.sleep(POLL_S)


async def started_job(response: Any) -> str:
    """The job link of a 202 answer."""
    assert response.status == 202, await response.text()
    return (await response.json())["links"]["job"]
