"""
A consumer for ``--handler amqp``: take each message from the queue, store
it in a Maildir, print its envelope, and only then acknowledge it.

The handler published each message persistent, with the envelope in the
headers ``x-mail-from`` (``""`` for the null sender) and ``x-rcpt-to`` (a
list); the body is the message, starting with the ``Received:`` line the
server added.  Acknowledging after the file is safely in ``new/`` means a
crash of this consumer loses nothing: RabbitMQ gives an unacknowledged
message to the next consumer.  It may then be stored twice (the crash came
between the rename and the ack), which is why a consumer that must not see
duplicates remembers the ``Message-ID`` headers it has stored.

Run it beside the daemon (pika is in the ``amqp`` extra)::

    twistd -n smtpsession --handler amqp
    python amqp_consumer.py --queue smtpsession --maildir ./Maildir
"""

import argparse
import os
import socket
import sys
import time

import pika


def store(maildir, data):
    """Write one message into the Maildir: tmp/, fsync, rename into new/."""
    for sub in ("tmp", "new", "cur"):
        os.makedirs(os.path.join(maildir, sub), exist_ok=True)
    name = f"{time.time_ns()}.P{os.getpid()}R{os.urandom(6).hex()}.{socket.gethostname()}"
    tmp = os.path.join(maildir, "tmp", name)
    with open(tmp, "xb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.rename(tmp, os.path.join(maildir, "new", name))
    return name


def handle(maildir, properties, body):
    """Store one message (with a Return-Path from the envelope); say what it was."""
    headers = properties.headers or {}
    sender = headers.get("x-mail-from", "")
    recipients = headers.get("x-rcpt-to", [])
    store(maildir, f"Return-Path: <{sender}>\r\n".encode() + body)
    to = ", ".join(f"<{r}>" for r in recipients)
    print(f"{properties.message_id}: from <{sender}> to {to} ({len(body)} bytes)", flush=True)


def consume(url, queue, maildir, count=0):
    """Handle messages until C{count} of them were (0: forever)."""
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        channel.basic_qos(prefetch_count=10)
        handled = 0
        for method, properties, body in channel.consume(queue):
            handle(maildir, properties, body)
            channel.basic_ack(method.delivery_tag)  # only once it is stored
            handled += 1
            if count and handled >= count:
                break
        channel.cancel()  # unacknowledged prefetched messages go back to the queue
    finally:
        connection.close()


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--url", default="amqp://guest:guest@127.0.0.1:5672/%2F")
    parser.add_argument("--queue", default="smtpsession")
    parser.add_argument("--maildir", default="./Maildir")
    parser.add_argument("--count", type=int, default=0, help="stop after this many (0: never)")
    args = parser.parse_args(argv)
    consume(args.url, args.queue, args.maildir, args.count)


if __name__ == "__main__":
    main(sys.argv[1:])
