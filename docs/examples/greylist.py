"""
A greylisting sketch (RFC 6647): refuse the first attempt of each
(client network, sender, recipient) triplet with a temporary error.  Real
mail servers retry after a few minutes and get through; most spam software
never retries.

Kept in memory for the sketch: a production version stores the triplets in
a shared database (several server processes, restarts) and expires old
entries periodically (``twisted.internet.task.LoopingCall``).
"""

import ipaddress
import math

from smtpsession import Handler, SMTPError


class Greylist(Handler):
    def __init__(self, delay=300, expire=4 * 3600, clock=None):
        if clock is None:
            from twisted.internet import reactor as clock
        self.delay = float(delay)
        self.expire = float(expire)
        self.clock = clock
        self.first_seen = {}

    def on_rcpt_to(self, address, session):
        if session.user is not None:
            return  # authenticated clients are not greylisted
        key = (
            _network(session.remote_address),
            session.envelope.mail_from.address.lower(),
            address.address.lower(),
        )
        now = self.clock.seconds()
        first = self.first_seen.get(key)
        if first is None or now - first > self.expire:
            self.first_seen[key] = first = now
        wait = self.delay - (now - first)
        if wait > 0:
            raise SMTPError(
                450, f"Greylisted, please try again in {math.ceil(wait)} seconds", "4.7.1"
            )


def _network(address):
    """Mail farms retry from a neighbouring address: key on the network."""
    ip = ipaddress.ip_address(address)
    prefix = 24 if ip.version == 4 else 64
    return str(ipaddress.ip_network(f"{ip}/{prefix}", strict=False))
