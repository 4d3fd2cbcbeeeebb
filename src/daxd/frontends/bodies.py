"""Large request bodies are decoded in a helper process, so that one does not hold the event loop.

orjson decodes a 15 MiB JSON body in 30-40 ms on a 2-core VM (the standard
library's ``json`` is no faster) and holds the GIL while it does, so a thread
would not help: every request on the node would wait behind the decode. A
body over :attr:`BodyDecoder.threshold` is instead sent to one helper process
(started at the first such body, with ``spawn``: never a fork of the running
node) and decoded there; what comes back costs a copy, not a parse. Small
bodies, nearly all of them, are decoded in place as before. The helper stops
after :data:`IDLE_STOP` seconds without a large body.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any

from daxd.messages import parse_body
from daxd.model.errors import SerializationException

log = logging.getLogger("daxd.http")

#: Bodies larger than this are decoded in the helper process.
OFF_LOOP_BYTES = 1 << 20
#: Seconds without a large body after which the helper process is stopped (and its memory and pipes freed).
IDLE_STOP = 10.0


def _decode(body: bytes) -> tuple[bool, Any]:
    """In the helper: the decoded body, or the SerializationException's message (exceptions with
    their own constructors do not always survive pickling, so the error crosses as text)."""
    try:
        return True, parse_body(body)
    except SerializationException as exc:
        return False, exc.message


class BodyDecoder:
    """Decodes request bodies, large ones in a helper process (see the module's docstring)."""

    def __init__(self, threshold: int = OFF_LOOP_BYTES, idle_stop: float = IDLE_STOP) -> None:
        self.threshold = threshold
        self.idle_stop = idle_stop
        self._pool: ProcessPoolExecutor | None = None
        self._busy = 0
        self._last_used = 0.0
        self._idle_timer: asyncio.TimerHandle | None = None

    async def decode(self, body: bytes) -> dict[str, Any]:
        """:func:`~daxd.messages.parse_body` of ``body``, off the event loop.

        Raises:
            SerializationException: not JSON, or not a JSON object.
        """
        loop = asyncio.get_running_loop()
        if self._pool is None:
            self._pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        if self._idle_timer is None:
            self._idle_timer = loop.call_later(self.idle_stop, self._stop_if_idle)
        self._busy += 1
        try:
            ok, value = await loop.run_in_executor(self._pool, _decode, body)
        except BrokenProcessPool:  # the helper died (killed, out of memory): decode here, start another next time
            log.warning("the body-decoding helper process died; decoding in the node")
            self._pool = None
            return parse_body(body)
        finally:
            self._busy -= 1
            self._last_used = loop.time()
        if not ok:
            raise SerializationException(value)
        return value  # type: ignore[no-any-return]

    def _stop_if_idle(self) -> None:
        loop = asyncio.get_running_loop()
        idle_for = loop.time() - self._last_used
        if self._busy or idle_for < self.idle_stop:
            self._idle_timer = loop.call_later(max(self.idle_stop - idle_for, 0.1), self._stop_if_idle)
            return
        self._idle_timer = None
        self.close()

    def close(self) -> None:
        """Stop the helper process, if one was started."""
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
