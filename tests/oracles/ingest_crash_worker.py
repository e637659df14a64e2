"""An ingesting node for the crash test: readings from an in-process source through
``Ingestor.run`` into the store; each ack is appended to a log as the sequence number.

Usage: python -m tests.oracles.ingest_crash_worker STORE_URL ACK_LOG TARGET. Like a broker
after a reconnect, the source starts again a little before the last acknowledged message (and
so redelivers some that were stored and acknowledged), then goes on up to TARGET - 1.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

from node.offchain.blobs import BlobStore
from node.offchain.classification import DEFAULT_RECORD_TYPES, Classification
from node.offchain.store import Store, now_us
from node.oracles.ingest import Ingestor
from node.oracles.messages import encode_message
from node.oracles.source import Reading
from node.oracles.validation import Validator
from tests.oracles.test_validation import message, oracle_settings, timestamp

REDELIVERED = 30
POINTS = [
    {"q": "thickness", "v": 0.085, "u": "MMT"},
    {"q": "temperature", "v": 180.5, "u": "CEL"},
    {"q": "humidity", "v": 41.0, "u": "P1"},
]


def last_acked(ack_log: Path) -> int:
    lines = ack_log.read_text().split() if ack_log.exists() else []
    return max((int(line) for line in lines), default=-1)


async def readings(ack_log: Path, target: int) -> AsyncIterator[Reading]:
    log = os.open(ack_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    for seq in range(max(0, last_acked(ack_log) + 1 - REDELIVERED), target):
        payload = encode_message(message(seq, points=POINTS, ts=timestamp(now_us())))

        def ack(seq: int = seq) -> None:
            os.write(log, f"{seq}\n".encode())  # unbuffered: survives a SIGKILL of this process

        yield Reading(
            "mqtt://127.0.0.1:1883/qnode/devices/gauge-01/data", payload, now_us(), ack=ack
        )
        if seq % 10 == 0:  # a device fleet's pace (at most 5,000 a second), not a flood
            await asyncio.sleep(0.002)


def main(argv: list[str]) -> int:
    store_url, ack_log, target = argv
    classification = Classification.from_config(DEFAULT_RECORD_TYPES)
    with tempfile.TemporaryDirectory() as blobs:
        store = Store.open(store_url, classification, BlobStore(Path(blobs)))
        ingestor = Ingestor(store, Validator(oracle_settings()), max_batch=40, max_delay_s=0.01)
        asyncio.run(ingestor.run(readings(Path(ack_log), int(target))))
        store.close()
    print("done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
