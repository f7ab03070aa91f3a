"""
AUTH without writing ``on_auth``: a ``twisted.cred`` checker does it.  Here
the checker reads a file of hashed passwords (the same file the daemon's
``--auth-file`` takes); any ``ICredentialsChecker`` works the same way.

Make the file, then run the server (implicit TLS on port 4650):

    python -m smtpsession.cred hash alice >> users.txt
    python auth_password_file.py users.txt cert.pem key.pem
"""

import sys

from smtpsession import Handler, SMTPServerFactory, SMTPServerOptions
from smtpsession.cred import checker_from_file


class Inbox(Handler):
    """No on_auth: the checker in the options authenticates."""

    async def on_data(self, stream, session):
        body = await stream.read()
        print(f"{len(body)} bytes from user {session.user}", flush=True)


def password_file_options(users_file, cert, key):
    return SMTPServerOptions(
        name="mail.example.test",
        tls_cert=cert,
        tls_key=key,
        secure=True,
        # Hashed passwords can check PLAIN and LOGIN; CRAM-MD5 and XOAUTH2
        # would be dropped from this list (with a warning) if listed.
        auth_methods=["PLAIN", "LOGIN"],
        credentials_checker=checker_from_file(users_file),
    )


def main(argv):
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    factory = SMTPServerFactory(Inbox(), password_file_options(*argv[1:4]))
    TCP4ServerEndpoint(reactor, 4650, interface="127.0.0.1").listen(factory)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
