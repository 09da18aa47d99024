"""The pool's frame reader against the framing the worker writes
(multiprocessing.connection): whole frames however the bytes arrive."""

from __future__ import annotations

import socket
import struct
from multiprocessing.connection import Connection

import anyio
import pytest

from engine._executors.process import FrameReader

pytestmark = pytest.mark.anyio


async def test_frames_arrive_whole_however_the_bytes_are_split() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    sender = Connection(theirs.detach())
    frames = [b"a" * 10, b"", b"b" * 70_000, b"c"]  # one bigger than a read
    for frame in frames:
        sender.send_bytes(frame)  # the worker's own writer
    reader = FrameReader(ours)
    assert [await reader.next() for _ in frames] == frames
    sender.close()
    with pytest.raises(EOFError):
        await reader.next()
    ours.close()


async def test_a_frame_written_a_byte_at_a_time_is_read_once_complete() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    payload = b"hello frames"
    wire = struct.pack("!i", len(payload)) + payload + struct.pack("!i", 1) + b"z"
    reader = FrameReader(ours)
    got: list[bytes] = []

    async def read_two() -> None:
        got.append(await reader.next())
        got.append(await reader.next())

    async with anyio.create_task_group() as tg:
        tg.start_soon(read_two)
        for i in range(len(wire)):
            theirs.send(wire[i : i + 1])
            await anyio.lowlevel.checkpoint()
    assert got == [payload, b"z"]
    ours.close()
    theirs.close()


async def test_the_long_header_of_huge_frames_is_understood() -> None:
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    payload = b"x" * 5
    theirs.sendall(struct.pack("!iQ", -1, len(payload)) + payload)
    assert await FrameReader(ours).next() == payload
    ours.close()
    theirs.close()
