"""What nodes tell each other: Redis pub/sub, one channel for all and one per node.

* ``request(node, kind, payload)``: a command for the node that owns a call (a staff pause,
  resume, end or message from a console another node serves). The owner acts through its
  policy engine and answers on the asker's own channel; the asker waits at most
  ``cluster_reply_s``. No subscriber or no answer is an error the API turns into a 503/504:
  a staff action is never reported done when nobody did it.
* ``broadcast(kind, payload)``: what every node must hear (a revocation, a drain).

Pub/sub is fire-and-forget (a node that is not subscribed at that instant misses the
message): that is why commands wait for an acknowledgement, and why anything that must
outlive a node is in the shared records, not on the bus.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from redis.asyncio import Redis
from redis.exceptions import RedisError

from relay.config import Config
from relay.tasks import cancel_and_wait

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any] | None]]


class BusError(Exception):
    """A command that did not reach its owner, or got no answer in time."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.message = message


class Bus:
    def __init__(self, redis: Redis, node_id: str, config: Config) -> None:
        self.redis = redis
        self.node_id = node_id
        self.config = config
        self.prefix = config.cluster_prefix
        self.all_channel = self.prefix + "bus"
        self.own_channel = self.node_channel(node_id)
        self.handlers: dict[str, Handler] = {}
        self.subscribed = asyncio.Event()
        self._waiting: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._running: set[asyncio.Task[None]] = set()

    def node_channel(self, node_id: str) -> str:
        return f"{self.prefix}node:{node_id}"

    def on(self, kind: str, handler: Handler) -> None:
        self.handlers[kind] = handler

    # --- sending ---------------------------------------------------------------------------

    async def request(self, node_id: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        rid = uuid.uuid4().hex
        answer: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = answer
        frame = {
            "kind": kind,
            "payload": payload,
            "id": rid,
            "reply_to": self.own_channel,
            "from": self.node_id,
        }
        try:
            heard = await self.redis.publish(self.node_channel(node_id), json.dumps(frame))
            if not heard:
                raise BusError(
                    503,
                    "owner_unavailable",
                    "the relay node running this call is not answering; try again",
                )
            return await asyncio.wait_for(answer, self.config.cluster_reply_s)
        except TimeoutError:
            raise BusError(
                504, "owner_timeout", "the relay node running this call did not confirm in time"
            ) from None
        except (RedisError, OSError):
            raise BusError(
                503, "cluster_unavailable", "the relay cannot reach its cluster; try again"
            ) from None
        finally:
            self._waiting.pop(rid, None)

    async def broadcast(self, kind: str, payload: dict[str, Any]) -> int:
        """Tell every node (this one too); returns how many heard it."""
        frame = {"kind": kind, "payload": payload, "from": self.node_id}
        return int(await self.redis.publish(self.all_channel, json.dumps(frame)))

    # --- receiving -------------------------------------------------------------------------

    def _dispatch(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
            kind = frame.get("kind")
        except (ValueError, AttributeError):
            log.warning("cluster: unreadable bus frame dropped")
            return
        if kind == "reply":
            waiting = self._waiting.get(str(frame.get("id")))
            if waiting is not None and not waiting.done():
                waiting.set_result(frame.get("payload") or {})
            return
        handler = self.handlers.get(str(kind))
        if handler is None:
            return
        task = asyncio.ensure_future(self._handle(handler, frame))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _handle(self, handler: Handler, frame: dict[str, Any]) -> None:
        try:
            result = await handler(frame.get("payload") or {})
        except Exception:
            log.exception("cluster: bus handler %s failed", frame.get("kind"))
            result = {
                "status": 500,
                "error": {"code": "internal_error", "message": "the owner node hit an error"},
            }
        reply_to = frame.get("reply_to")
        if reply_to and frame.get("id"):
            reply = {"kind": "reply", "id": frame["id"], "payload": result or {}}
            try:
                await self.redis.publish(str(reply_to), json.dumps(reply))
            except (RedisError, OSError):
                log.warning("cluster: could not answer %s", frame.get("kind"))

    async def _listen(self) -> None:
        failing = False
        while True:
            pubsub = self.redis.pubsub()
            try:
                await pubsub.subscribe(self.all_channel, self.own_channel)
                self.subscribed.set()
                if failing:
                    log.warning("cluster: bus subscribed again")
                failing = False
                async for message in pubsub.listen():
                    if message.get("type") == "message":
                        self._dispatch(message["data"])  # the client decodes responses
            except (RedisError, OSError) as exc:
                self.subscribed.clear()
                if not failing:
                    log.warning("cluster: bus lost (%s)", type(exc).__name__)
                failing = True
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()
            await asyncio.sleep(self.config.node_refresh_s)

    async def start(self) -> None:
        self._task = asyncio.ensure_future(self._listen())
        with contextlib.suppress(TimeoutError):  # Redis down: the listener keeps trying
            await asyncio.wait_for(self.subscribed.wait(), self.config.node_expiry_s)

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        for task in list(self._running):
            await cancel_and_wait(task)
