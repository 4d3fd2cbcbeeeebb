"""Large bodies are decoded in a helper process, with parse_body's answers."""

from __future__ import annotations

import os

import pytest

from daxd.frontends.bodies import BodyDecoder
from daxd.model.errors import SerializationException


async def test_the_helper_process_decodes_and_refuses_as_parse_body_does() -> None:
    decoder = BodyDecoder(threshold=0)
    try:
        assert await decoder.decode(b'{"TableName": "t", "Item": {"v": {"S": "x"}}}') == {
            "TableName": "t", "Item": {"v": {"S": "x"}}}
        with pytest.raises(SerializationException):
            await decoder.decode(b"{not json")
        with pytest.raises(SerializationException, match="Unexpected value type"):
            await decoder.decode(b"[1, 2]")
        assert decoder._pool is not None
        helpers = list(decoder._pool._processes.values())
        assert len(helpers) == 1 and helpers[0].pid != os.getpid()
    finally:
        decoder.close()


async def test_the_helper_stops_when_idle_and_starts_again_when_needed() -> None:
    import asyncio
    decoder = BodyDecoder(threshold=0, idle_stop=0.3)
    try:
        assert await decoder.decode(b'{"a": 1}') == {"a": 1}
        assert decoder._pool is not None
        await asyncio.sleep(0.8)
        assert decoder._pool is None
        assert await decoder.decode(b'{"b": 2}') == {"b": 2}
        assert decoder._pool is not None
    finally:
        decoder.close()
