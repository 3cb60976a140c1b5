"""Request ids: unique, hex, and never repeated by a forked worker."""

from __future__ import annotations

import os

from gateway_engine.foundation.context import RequestContext


def _new_id() -> str:
    return RequestContext({"method": "GET", "path": "/", "headers": []}, None, None, {}, "").request_id


def test_request_ids_are_unique_and_hex():
    ids = [_new_id() for _ in range(2000)]  # several refills of the entropy buffer
    assert len(set(ids)) == len(ids)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_a_forked_child_does_not_hand_out_the_parents_next_ids():
    _new_id()  # the parent holds a partly used buffer now
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        os.write(write, _new_id().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    assert child != _new_id()
