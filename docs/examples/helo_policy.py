"""
A hello policy (on_helo): refuse clients that greet with our own name or
with something that is not a host name at all, as Postfix's
``reject_non_fqdn_helo_hostname`` does.  Spam software often says
``EHLO localhost`` or borrows the receiving server's name.

RFC 5321 §4.1.4 forbids refusing a client only because its name does not
match its reverse DNS, so this checks the name, not the address.
"""

from smtpsession import Handler, SMTPError


class HeloPolicy(Handler):
    def __init__(self, own_names=()):
        self.own_names = {name.lower() for name in own_names}

    def on_helo(self, hostname, session):
        # hostname is lower-cased: the value session.host_name_appears_as
        # will have once the hello is accepted.
        if hostname.startswith("["):
            return  # an address literal, [192.0.2.1]: allowed by RFC 5321
        if hostname in self.own_names:
            raise SMTPError(550, "You are not me", "5.7.1")
        if "." not in hostname or hostname == "localhost.localdomain":
            raise SMTPError(550, "Give your fully qualified host name", "5.7.1")
