"""
TLS when embedding smtpsession: STARTTLS on one port and implicit TLS
(SMTPS) on another, one default certificate plus more served by SNI, and an
``on_secure`` hook that sees what was negotiated.

Run it (the certificate and key are PEM files; the SNI directory holds one
PEM file per extra identity, key and certificate chain together):

    python tls_server.py cert.pem key.pem [sni-directory]

It listens on 127.0.0.1, STARTTLS on port 2525 and SMTPS on port 4650
(``--ports STARTTLS,SMTPS`` chooses others; 0 picks free ones) and prints
one line per message.
"""

import sys

from smtpsession import Handler, SMTPError, SMTPServerFactory, SMTPServerOptions


class TLSReport(Handler):
    """Accept mail and say how it was protected."""

    def on_secure(self, session):
        # Called once after every handshake, STARTTLS or implicit.  Refuse a
        # client here (raise SMTPError) and the connection is closed.
        if session.tls_options["version"] not in ("TLSv1.2", "TLSv1.3"):
            raise SMTPError(554, "TLS 1.2 or later, please", "5.7.0")

    async def on_data(self, stream, session):
        body = await stream.read()
        tls = session.tls_options or {}
        print(
            f"{len(body)} bytes over {tls.get('version', 'cleartext')} "
            f"({tls.get('name', '-')}), server name {session.servername or '-'}, "
            f"{session.transmission_type}",
            flush=True,
        )


def server_options(cert, key, sni_directory=None, *, secure=False):
    """
    The options of one listener.  ``secure=True`` makes it implicit TLS:
    the handshake comes first, on a plain TCP port.
    """
    return SMTPServerOptions(
        name="mail.example.test",
        tls_cert=cert,
        tls_key=key,
        tls_sni_dir=sni_directory,  # None: the default certificate only
        tls_min_version="TLSv1.2",
        secure=secure,
    )


def main(argv):
    from twisted.internet import reactor
    from twisted.internet.endpoints import TCP4ServerEndpoint

    ports = [2525, 4650]
    if "--ports" in argv:
        i = argv.index("--ports")
        ports = [int(p) for p in argv[i + 1].split(",")]
        del argv[i : i + 2]
    cert, key = argv[1], argv[2]
    sni = argv[3] if len(argv) > 3 else None
    handler = TLSReport()

    def listening(port, kind):
        print(f"{kind} on 127.0.0.1:{port.getHost().port}", flush=True)

    for port, secure in zip(ports, (False, True), strict=True):
        factory = SMTPServerFactory(handler, server_options(cert, key, sni, secure=secure))
        endpoint = TCP4ServerEndpoint(reactor, port, interface="127.0.0.1")
        d = endpoint.listen(factory)
        d.addCallback(listening, "SMTPS" if secure else "STARTTLS")
    reactor.run()


if __name__ == "__main__":
    main(sys.argv)
