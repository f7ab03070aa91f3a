#!/usr/bin/env python3
"""
A RabbitMQ broker for the benchmark's AMQP rows: the tests' own
(tests/integration/rabbitmq.py: Debian's rabbitmq-server on 127.0.0.1,
ports, directories and node name of its own), started here, its URL
printed on the first line of standard output, stopped (by the process ids
it started) when standard input closes.

usage: rabbitmq_broker.py < FIFO     (the caller keeps FIFO open while it needs the broker)
needs: pika and pytest importable (the tests' helper uses both)
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.integration.rabbitmq import RabbitMQ


def main() -> None:
    base = Path(tempfile.mkdtemp(prefix="bench-rabbitmq-"))
    broker = RabbitMQ(base)
    try:
        broker.start()
        print(broker.url, flush=True)
        sys.stdin.read()  # until the caller closes it
    finally:
        broker.close()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
