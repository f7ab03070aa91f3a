"""
A submission server's ``on_auth``: one hook checks every SASL mechanism
(PLAIN, LOGIN, CRAM-MD5 with ``validate_password``; XOAUTH2 with the access
token), and ``on_mail_from`` only lets users send as themselves.

Passwords are kept in plain text here because CRAM-MD5 needs them; with
hashed passwords, offer PLAIN and LOGIN only (see auth_password_file.py).
"""

from smtpsession import Handler, SMTPError, SMTPServerOptions


class Submission(Handler):
    def __init__(self, passwords, tokens=None):
        self.passwords = passwords  # user -> password
        self.tokens = tokens or {}  # OAuth 2 access token -> user

    def on_auth(self, auth, session):
        if auth.method == "XOAUTH2":
            if self.tokens.get(auth.access_token) == auth.username:
                return auth.username
            # What the client sees in the 334 challenge before the 535.
            auth.error_data = {"status": "401", "schemes": "bearer", "scope": "smtp"}
            return None
        password = self.passwords.get(auth.username)
        # validate_password compares in constant time; for CRAM-MD5 it
        # recomputes the digest from the password and the challenge.
        if password is not None and auth.validate_password(password):
            return auth.username  # becomes session.user
        return None  # 535 5.7.8

    def on_mail_from(self, address, session):
        if address.address.lower() != session.user.lower():
            raise SMTPError(553, f"Not allowed to send as <{address.address}>", "5.7.1")

    async def on_data(self, stream, session):
        body = await stream.read()
        print(f"{session.user} sent {len(body)} bytes ({session.transmission_type})", flush=True)


def submission_options(cert, key):
    """Port 587 style: STARTTLS, then AUTH (required) with every mechanism."""
    return SMTPServerOptions(
        name="submit.example.test",
        tls_cert=cert,
        tls_key=key,
        auth_methods=["PLAIN", "LOGIN", "CRAM-MD5", "XOAUTH2"],
    )
