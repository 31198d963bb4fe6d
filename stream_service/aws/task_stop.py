"""Hands the node's clients over before the load balancer cuts them, when ECS stops the task.

How ECS stops a task behind an ALB (a deploy, a scale-in): it sets the task's desired status
to ``STOPPED`` and deregisters its target; the ALB sends the target no new request and keeps
its open connections for the target group's deregistration delay, then closes what is still
open; only then (or as soon as the target has no connection left) does ECS send SIGTERM,
and SIGKILL ``stopTimeout`` later. A node that waited for SIGTERM to drain would meet the
ALB's cut first: its streams cut with no hint.

So the node watches its own task in the ECS task metadata endpoint
(``${ECS_CONTAINER_METADATA_URI_V4}/task``, ``DesiredStatus``). When the task is asked to
stop, the running streams simply go on (most end within the delay, their clients notice
nothing); ``DRAIN_S + HANDOFF_MARGIN_S`` before the delay ends, the node starts its drain:
clients still connected are told to reconnect (SSE ``retry:``, WebSocket 1012), reconnect
through the ALB to another node and resume from the store with no gap, while the
producers left here get ``DRAIN_S`` to finish. SIGTERM starts the same drain at once if it
comes first (outside ECS it is the only signal).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import httpx

log = logging.getLogger("rtai.stream.task_stop")

STOPPED = "STOPPED"


class TaskStopWatch:
    def __init__(
        self,
        metadata_uri: str,
        *,
        deregistration_delay_s: float,
        lead_s: float,
        begin_drain: Callable[[], None],
        poll_s: float = 1.0,
    ) -> None:
        self.task_url = metadata_uri.rstrip("/") + "/task"
        self.deregistration_delay_s = deregistration_delay_s
        self.lead_s = lead_s
        self.begin_drain = begin_drain
        self.poll_s = poll_s

    @property
    def handoff_after_s(self) -> float:
        """Seconds from the stop request to the start of the drain."""
        return max(0.0, self.deregistration_delay_s - self.lead_s)

    async def run(self) -> None:
        """Poll until the task is asked to stop, wait, start the drain; cancel to end."""
        async with httpx.AsyncClient(timeout=httpx.Timeout(2.0)) as client:
            while True:
                if await self._stop_requested(client):
                    break
                await asyncio.sleep(self.poll_s)
        log.warning(
            "ECS is stopping this task (target draining): streams go on; clients are handed"
            " over in %.0f s, %.0f s before the ALB's deregistration delay ends",
            self.handoff_after_s,
            self.lead_s,
        )
        await asyncio.sleep(self.handoff_after_s)
        self.begin_drain()

    async def _stop_requested(self, client: httpx.AsyncClient) -> bool:
        try:
            response = await client.get(self.task_url)
            response.raise_for_status()
            return bool(response.json().get("DesiredStatus") == STOPPED)
        except (httpx.HTTPError, ValueError, AttributeError):
            # the agent restarting, a blip: SIGTERM still drains; try again next poll
            log.debug("task metadata unavailable", exc_info=True)
            return False
