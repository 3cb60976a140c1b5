"""The slow-client deadlines hold for the later requests of a keep-alive connection too: the server protocol
watches a head or a body only once a read ends with it incomplete, so these pin that such a read is watched."""

from __future__ import annotations

import asyncio

from tests.test_server_limits import (  # noqa: F401 (fixtures)
    GUARD,
    assert_envelope,
    gateway_short,
    module_upstream,
    parse,
    read_all,
)


async def one_answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """Read one answer with a content-length body, leaving the connection open."""
    async with asyncio.timeout(GUARD):
        head = await reader.readuntil(b"\r\n\r\n")
        status, headers, _ = parse(head)
        return status, await reader.readexactly(int(headers["content-length"]))


async def after_one_request(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\n\r\n")  # head and (no) body in one read
    status, _ = await one_answer(reader)
    assert status == 200
    return reader, writer


async def test_a_later_head_left_half_sent_gets_408(gateway_short):
    reader, writer = await after_one_request(gateway_short)
    try:
        writer.write(b"GET /api/b/echo HTTP/1.1\r\nhost: x\r\nx-a: ")
        answer = await read_all(reader)
    finally:
        writer.close()
    assert_envelope(answer, 408, "REQUEST_TIMEOUT")


async def test_a_later_body_that_stalls_gets_408(gateway_short):
    reader, writer = await after_one_request(gateway_short)
    try:
        writer.write(
            b'POST /api/s/buffered HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n"aaaa'
        )
        answer = await read_all(reader)
    finally:
        writer.close()
    assert_envelope(answer, 408, "REQUEST_TIMEOUT")
    assert b"paused for more than 1s" in answer


async def test_requests_each_in_one_read_are_answered_on_one_connection(gateway_short):
    reader, writer = await after_one_request(gateway_short)
    try:
        for _ in range(20):
            writer.write(
                b'POST /api/s/buffered HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 4\r\n\r\n"ab"'
            )
            status, body = await one_answer(reader)
            assert status == 200 and b"ab" in body
    finally:
        writer.close()
