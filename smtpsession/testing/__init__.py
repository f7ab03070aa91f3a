# -*- test-case-name: tests.integration.test_testing -*-
"""
Run an smtpsession server inside your own tests and look at what it got.

    from smtpsession.testing import serve

    def test_my_app_sends_mail():
        with serve() as server:
            my_app.send_welcome_mail(host=server.host, port=server.port)
        [message] = server.messages
        assert message.rcpt_to == ["new.user@example.com"]
        assert message.message["Subject"] == "Welcome"

With pytest, the C{smtp_server} fixture does the same (the plugin is
registered when smtpsession is installed); override the
C{smtp_server_handler} or C{smtp_server_options} fixtures to change what it
runs.

The server runs on the global Twisted reactor in a background thread (started
once, on first use), so blocking clients such as C{smtplib} can be used from
the test itself.  Servers listen on 127.0.0.1 by default.
"""

from __future__ import annotations

import email
import email.message
import email.policy
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from smtpsession.handler import Handler
from smtpsession.options import SMTPServerOptions
from smtpsession.session import Envelope, Session

__all__ = [
    "ReceivedMessage",
    "RecordingHandler",
    "RunningServer",
    "call_in_reactor",
    "reactor_thread",
    "serve",
]

_lock = threading.Lock()
_thread: threading.Thread | None = None


def reactor_thread() -> threading.Thread:
    """
    Start the global reactor in a daemon thread (once) and return the thread.

    Do not mix this with code that runs the reactor in the main thread (such
    as trial's asynchronous TestCase) in the same process.
    """
    global _thread
    with _lock:
        if _thread is not None and _thread.is_alive():
            return _thread
        from twisted.internet import reactor

        ready = threading.Event()
        reactor.callWhenRunning(ready.set)
        # Without signal handlers (impossible outside the main thread) the
        # reactor never hears SIGCHLD: reap child processes a handler may
        # spawn by polling, or their processEnded would never fire.
        reactor.callWhenRunning(_reap_children)
        _thread = threading.Thread(
            target=reactor.run,
            kwargs={"installSignalHandlers": False},
            name="smtpsession-reactor",
            daemon=True,
        )
        _thread.start()
        if not ready.wait(10):
            raise RuntimeError("the Twisted reactor did not start")
        return _thread


def _reap_children() -> None:
    from twisted.internet.task import LoopingCall

    try:
        from twisted.internet.process import reapAllProcesses
    except ImportError:  # pragma: no cover (platforms without processes)
        return
    LoopingCall(reapAllProcesses).start(0.1, now=False)


def call_in_reactor(f: Any, *args: Any, **kwargs: Any) -> Any:
    """
    Call C{f} in the reactor thread and wait for its result (waiting for it
    too if it is a Deferred).
    """
    from twisted.internet import reactor
    from twisted.internet.threads import blockingCallFromThread

    reactor_thread()
    return blockingCallFromThread(reactor, f, *args, **kwargs)  # type: ignore[arg-type]


@dataclass
class ReceivedMessage:
    """One message a L{RecordingHandler} accepted."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes
    envelope: Envelope
    session: Session
    #: Session fields at the time of the message (the session object itself
    #: changes as the connection goes on).
    secure: bool = False
    user: Any = None
    transmission_type: str = ""

    @property
    def body(self) -> bytes:
        """Alias of C{data}: the message as received (headers and body)."""
        return self.data

    @property
    def message(self) -> email.message.EmailMessage:
        """
        The message parsed with the standard library's modern policy, for
        looking at headers and parts: C{message["Subject"]},
        C{message.get_content()}.  Lines end in LF here (the
        raw C{data} keeps SMTP's CRLF).
        """
        text = self.data.replace(b"\r\n", b"\n")
        parsed = email.message_from_bytes(text, policy=email.policy.default)
        assert isinstance(parsed, email.message.EmailMessage)
        return parsed


@dataclass
class RecordingHandler(Handler):
    """
    Accept everything and keep each message in C{messages}, in the order
    the server accepted them.  Give C{users} (name → password) to make it
    offer and check AUTH.
    """

    messages: list[ReceivedMessage] = field(default_factory=list)
    sessions: list[Session] = field(default_factory=list)
    users: dict[str, str] | None = None

    def on_connect(self, session: Session) -> None:
        self.sessions.append(session)

    async def on_data(self, stream: Any, session: Session) -> None:
        chunks = [chunk async for chunk in stream]
        env = session.envelope
        self.messages.append(
            ReceivedMessage(
                mail_from=env.mail_from.address if env.mail_from else "",
                rcpt_to=[a.address for a in env.rcpt_to],
                data=b"".join(chunks),
                envelope=env,
                session=session,
                secure=session.secure,
                user=session.user,
                transmission_type=session.transmission_type,
            )
        )

    def __post_init__(self) -> None:
        if self.users is not None:
            users = self.users

            def on_auth(auth: Any, session: Session) -> Any:
                password = users.get(auth.username)
                if password is not None and auth.validate_password(password):
                    return auth.username
                return None

            self.on_auth = on_auth  # type: ignore[method-assign]

    def clear(self) -> None:
        """Forget the messages and sessions recorded so far."""
        del self.messages[:]
        del self.sessions[:]


@dataclass
class RunningServer:
    """A server started by L{serve}."""

    host: str
    port: int
    factory: Any
    listening_port: Any
    handler: Any = None

    @property
    def address(self) -> tuple[str, int]:
        """C{(host, port)}, as C{smtplib.SMTP} and sockets take it."""
        return (self.host, self.port)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """
        The messages received so far, in order (when the handler is a
        L{RecordingHandler}, as it is by default).
        """
        messages = getattr(self.handler, "messages", None)
        if messages is None:
            raise AttributeError(
                f"{type(self.handler).__name__} does not record messages; "
                "use a RecordingHandler (the default)"
            )
        return messages

    def wait_for_messages(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMessage]:
        """
        Wait until at least C{count} messages have arrived (for code that
        sends mail in the background) and return them all.

        @raise TimeoutError: if they do not arrive within C{timeout} seconds.
        """
        deadline = time.monotonic() + timeout
        while len(self.messages) < count:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout} s, got {len(self.messages)}"
                )
            time.sleep(0.01)
        return list(self.messages)


@contextmanager
def serve(
    handler: object | None = None,
    options: SMTPServerOptions | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    endpoint: str | None = None,
    close_timeout: float = 5.0,
) -> Iterator[RunningServer]:
    """
    Run a server for the duration of a C{with} block.

    @param handler: the handler (default: a new L{RecordingHandler}).
    @param options: server options.  The reverse lookup is turned off
        unless options are given, so tests do not wait on DNS.
    @param endpoint: a server endpoint string to listen on instead of
        C{tcp:PORT:interface=HOST}.

    A handler that is also a Twisted service (C{IService}, as
    L{smtpsession.handlers.amqp.AMQPHandler} is) and is not running yet is
    started with the server and stopped after it, as
    L{smtpsession.service.SMTPService} does.
    """
    from twisted.application.service import IService
    from twisted.internet import reactor
    from twisted.internet.endpoints import serverFromString

    from smtpsession.factory import SMTPServerFactory

    if handler is None:
        handler = RecordingHandler()
    if options is None:
        options = SMTPServerOptions(name="smtpsession.test", disable_reverse_lookup=True)
    description = endpoint or f"tcp:{port}:interface={host}"

    def start() -> Any:
        factory = SMTPServerFactory(handler, options, reactor=reactor)
        d = serverFromString(reactor, description).listen(factory)
        d.addCallback(lambda lp: (factory, lp))
        return d

    factory, listening = call_in_reactor(start)
    # A handler that is a Twisted service (the AMQP handler) runs while the
    # server does, as under SMTPService: started now, stopped after the drain.
    service: Any = handler if IService.providedBy(handler) else None
    if service is not None and service.running:
        service = None  # started by the caller: theirs to stop
    if service is not None:
        call_in_reactor(service.startService)
    address = listening.getHost()
    server = RunningServer(
        host=getattr(address, "host", host),
        port=getattr(address, "port", 0),
        factory=factory,
        listening_port=listening,
        handler=handler,
    )
    try:
        yield server
    finally:

        def stop() -> Any:
            d = listening.stopListening()
            d.addCallback(lambda _: factory.close(timeout=close_timeout))
            if service is not None:
                d.addCallback(lambda _: service.stopService())
            return d

        call_in_reactor(stop)
