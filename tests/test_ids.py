"""foundation.ids: random hex from the OS's CSPRNG, and ids that sort by creation time."""

from __future__ import annotations

import os
import re
import time

from gateway_engine.foundation.ids import random_hex, sortable_id


def test_random_hex_is_fresh_every_time_and_of_the_asked_length():
    seen = {random_hex() for _ in range(5000)}  # crosses several 4 KiB refills
    assert len(seen) == 5000 and all(re.fullmatch(r"[0-9a-f]{32}", value) for value in seen)
    assert re.fullmatch(r"[0-9a-f]{16}", random_hex(8))


def test_sortable_ids_sort_by_creation_time():
    ids = []
    for _ in range(200):
        ids.append(sortable_id("msg"))
        time.sleep(0.00001)
    assert ids == sorted(ids) and len(set(ids)) == 200
    assert all(re.fullmatch(r"msg_[0-9a-f]{14}[0-9a-f]{16}", value) for value in ids)
    stamp = int(ids[0][4:18], 16) / 1e6
    assert abs(stamp - time.time()) < 60


def test_a_forked_child_never_hands_out_its_parents_bytes():
    random_hex()  # the buffer is filled in the parent
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: what it draws next goes to the parent
        os.write(write, random_hex().encode())
        os._exit(0)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    os.close(write)
    assert len(child) == 32 and child != random_hex()
