"""
The public surface promised in API.md: the top-level names, the handler
interface, and the fields of the objects handlers see.  A change here is a
change of the contract.
"""

from __future__ import annotations

import dataclasses
import inspect

from zope.interface.verify import verifyClass, verifyObject

import smtpsession
from smtpsession import (
    Address,
    AuthRequest,
    Envelope,
    Handler,
    ISMTPHandler,
    Session,
    SMTPError,
    SMTPServerOptions,
)
from smtpsession.interfaces import IMessageStream
from smtpsession.stream import MessageStream

#: API.md, "Package": the top-level exports.
EXPORTS = {
    "SMTPServerFactory",
    "SMTPServerOptions",
    "Handler",
    "ISMTPHandler",
    "SMTPError",
    "Session",
    "Envelope",
    "Address",
    "AuthRequest",
}

#: API.md, "Handler": the hooks and their arguments.
HOOKS = {
    "on_connect": ["session"],
    "on_secure": ["session"],
    "on_auth": ["auth", "session"],
    "on_mail_from": ["address", "session"],
    "on_rcpt_to": ["address", "session"],
    "on_data": ["stream", "session"],
    "on_close": ["session"],
    "on_helo": ["hostname", "session"],
    "on_vrfy": ["address", "session"],
    "on_expn": ["name", "session"],
    "on_rset": ["session"],
}

#: API.md, "Session, Envelope, Address".
SESSION_FIELDS = {
    "id", "remote_address", "remote_port", "local_address", "local_port", "client_hostname",
    "host_name_appears_as", "opening_command", "secure", "tls_options", "servername", "user",
    "transaction", "transmission_type", "envelope", "x_client", "x_forward", "error",
}
ENVELOPE_FIELDS = {
    "mail_from", "rcpt_to", "body_type", "smtp_utf8", "require_tls", "dsn",
    # API.md, "Extensions and hooks": RRVS, DELIVERBY, MT-PRIORITY.
    "rrvs", "deliver_by", "priority",
}

#: API.md, "Options": the option names it spells out.
OPTIONS = {
    "name", "banner", "lmtp", "secure", "auth_methods", "auth_optional", "allow_insecure_auth",
    "size", "max_clients", "max_recipients", "disabled_commands", "use_xclient", "use_xforward",
    "use_proxy", "socket_timeout", "close_timeout", "max_allowed_unauthenticated_commands",
    "disable_reverse_lookup", "resolver", "hide_pipelining", "hide_8bitmime", "hide_smtputf8",
    "hide_enhancedstatuscodes", "hide_dsn", "hide_size", "hide_starttls", "hide_requiretls",
}


def test_all_is_exactly_the_documented_exports() -> None:
    """smtpsession.__all__ is API.md's list, and every name is importable."""
    assert set(smtpsession.__all__) == EXPORTS
    assert len(smtpsession.__all__) == len(EXPORTS)
    for name in EXPORTS:
        assert getattr(smtpsession, name) is not None


def test_handler_provides_the_interface() -> None:
    """Handler implements ISMTPHandler completely."""
    assert verifyObject(ISMTPHandler, Handler())
    assert verifyClass(ISMTPHandler, Handler)


def test_hooks_and_their_signatures() -> None:
    """The interface has exactly API.md's hooks, with its argument names."""
    assert set(ISMTPHandler.names()) == set(HOOKS)
    for name, args in HOOKS.items():
        params = list(inspect.signature(getattr(Handler, name)).parameters)
        assert params == ["self", *args], name
        assert ISMTPHandler[name].getSignatureInfo()["positional"] == tuple(args)


def test_session_envelope_address_fields() -> None:
    """Session, Envelope and Address carry the documented fields and defaults."""
    session = Session(id="x")
    for field in SESSION_FIELDS:
        assert hasattr(session, field), field
    session.custom_data = 1  # type: ignore[attr-defined]  # handlers may add their own
    envelope = Envelope()
    for field in ENVELOPE_FIELDS:
        assert hasattr(envelope, field), field
    assert hasattr(envelope.dsn, "ret") and hasattr(envelope.dsn, "envid")
    address = Address("")
    assert (address.address, address.args, address.dsn) == ("", {}, None)


def test_options_fields() -> None:
    """SMTPServerOptions has every option API.md names, each with help text."""
    fields = {f.name: f for f in dataclasses.fields(SMTPServerOptions)}
    assert OPTIONS <= set(fields)
    for f in fields.values():
        assert f.metadata.get("help"), f.name
    assert dataclasses.is_dataclass(SMTPServerOptions)
    assert SMTPServerOptions.__dataclass_params__.frozen  # type: ignore[attr-defined]


def test_smtp_error_signature() -> None:
    """SMTPError(code, message, enhanced=None), all optional, validated."""
    e = SMTPError(550, "No", "5.7.1")
    assert (e.code, e.message, e.enhanced) == (550, "No", "5.7.1")
    assert list(inspect.signature(SMTPError).parameters) == ["code", "message", "enhanced"]
    assert SMTPError().code is None
    for bad in [lambda: SMTPError(99), lambda: SMTPError(550, "x", "4.1.1"),
                lambda: SMTPError(550, "x", "5.1")]:
        try:
            bad()
        except ValueError:
            continue
        raise AssertionError("accepted a malformed reply code")


def test_auth_request_fields() -> None:
    """AuthRequest: method, username, password, access_token, validate_password()."""
    auth = AuthRequest("PLAIN", "user", password="secret")
    assert (auth.method, auth.username, auth.password, auth.access_token) == (
        "PLAIN", "user", "secret", None,
    )
    assert callable(auth.validate_password)
    assert "secret" not in repr(auth)


def test_message_stream_interface() -> None:
    """The stream handed to on_data provides IMessageStream."""
    stream = MessageStream(0, lambda: None, lambda: None)
    assert verifyObject(IMessageStream, stream)
    for name in ("byte_length", "size_exceeded", "read", "write_to", "__aiter__"):
        assert hasattr(stream, name)
