"""
Receive mail for your domains and hand it to Dovecot over LMTP.

smtpsession applies the policy (which domains it serves, and anything else
you add: greylisting, spam checks); Dovecot delivers, with its own quotas
and Sieve rules.  The built-in relay handler does the LMTP side: each
recipient is checked with Dovecot at RCPT time (an unknown user is refused
there, with Dovecot's own reply), the body is streamed through, and the
client never gets a 250 that Dovecot did not give.

    twistd -n smtpsession --port tcp:25 \
        --handler relay_dovecot.DovecotFront \
        --handler-option domains=example.com,example.net
"""

from smtpsession import SMTPError
from smtpsession.handlers import RelayHandler


class DovecotFront(RelayHandler):
    def __init__(
        self, domains="example.com", upstream="unix:/run/dovecot/lmtp", **options
    ):
        # An endpoint string: "unix:PATH" for Dovecot's socket, or
        # "tcp:HOST:24" for its TCP listener.
        super().__init__(endpoint=upstream, lmtp=True, **options)
        self.domains = {d.strip().lower() for d in domains.split(",") if d.strip()}

    async def on_rcpt_to(self, address, session):
        domain = address.address.rpartition("@")[2].lower()
        if domain not in self.domains:
            raise SMTPError(554, "Relay access denied", "5.7.1")
        # Ask Dovecot: its answer (250, or 550 for an unknown user) is ours.
        return await super().on_rcpt_to(address, session)
