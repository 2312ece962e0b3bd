"""A render worker that misbehaves on chosen sample ids (set in the environment by a test)."""

import os
import time

from blender_scripts import worker


class _FaultyConn:
    def __init__(self, conn):
        self._conn = conn
        self._raised = set()

    def recv(self):
        msg = self._conn.recv()
        if msg[0] == "render":
            sample_id = msg[2]["id"]
            if sample_id == os.environ.get("TWO4TWO_TEST_CRASH_ID"):
                os._exit(3)
            if sample_id == os.environ.get("TWO4TWO_TEST_HANG_ID"):
                time.sleep(3600)
            raise_always = sample_id == os.environ.get("TWO4TWO_TEST_RAISE_ID")
            raise_once = sample_id == os.environ.get("TWO4TWO_TEST_RAISE_ONCE_ID") and sample_id not in self._raised
            if raise_always or raise_once:
                self._raised.add(sample_id)
                msg[2]["arm_position"] = "not a number"  # the scene raises a ValueError
        return msg

    def __getattr__(self, name):
        return getattr(self._conn, name)


def serve(conn, settings):
    worker.serve(_FaultyConn(conn), settings)
