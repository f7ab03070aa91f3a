# -*- test-case-name: tests.unit.test_twisted_shim -*-
"""
Every use of Twisted's internals, in one place.

Everything else in smtpsession uses Twisted's public APIs.  What is here
buys speed that the public APIs cannot give, measured in
docs/benchmarks.md; each function falls back to the public way when the
internals it needs are not there, so a Twisted release that changes them
makes smtpsession slower, never wrong.  C{tests/unit/test_twisted_shim.py}
checks that the internals are still there and behave as assumed, and fails
loudly when a release changes them, so that the loss is noticed.

The internals:

  - C{twisted.internet.tcp.Server}: C{socket}, C{dataBuffer} and
    C{_tempDataBuffer} (the write queue), C{doWrite()}, C{bufferSize}
    (the size of each C{recv}), C{connected} and C{disconnecting};
  - C{twisted.protocols.tls.TLSMemoryBIOProtocol.write}, the unbuffered
    write of the TLS layer (the public transport buffers small writes
    for a reactor turn), and the C{protocol} attribute of the wrapper
    C{startTLS} puts around the TCP transport;
  - C{twisted.logger.globalLogPublisher._observers} and
    C{FileLogObserver._outFile}: where twistd's log goes, so that the
    transaction log can be written there in batches (a log event costs
    more than receiving a small message), and so that the daemon can put a
    filter in front of twistd's observer (the per-lookup chatter of
    twisted.names' UDP ports);
  - C{_interface} and C{_port} of C{twisted.internet.endpoints}'
    C{TCP4ServerEndpoint}, C{TCP6ServerEndpoint} and C{SSL4ServerEndpoint}:
    the address an endpoint string names, as Twisted parsed it, so that the
    daemon can find a port in use before twistd forks;
  - C{fileno()} and C{stopReading()} of the listening port an endpoint
    returns (C{twisted.internet.tcp.Port}, C{unix.Port}: public methods of
    C{FileDescriptor}, but not of the C{IListeningPort} interface): the
    supervisor of C{--workers} opens the sockets as the endpoints say and
    hands them to its workers (smtpsession._supervisor); and C{_shouldShutdown}
    of that port, so that closing the supervisor's copy never shuts the
    shared socket down under the workers (Twisted already does so for ports
    made with C{adoptStreamPort}, the workers');
  - C{twisted.internet.epollreactor.EPollReactor}: C{_poller},
    C{_selectables} and C{_doReadOrWrite}, which its C{doPoll} uses, so
    that the daemon can dispatch each ready socket without the legacy
    logging context around it (L{dispatch_without_log_context}).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = [
    "can_send_directly",
    "send_directly",
    "tls_writer",
    "set_read_size",
    "tls_wrapper_protocol",
    "sole_text_log_file",
    "still_sole_observer",
    "wrap_sole_observer",
    "tcp_listen_address",
    "stop_accepting",
    "dispatch_without_log_context",
]


def _tcp_server() -> type | None:
    try:
        from twisted.internet.tcp import Server
    except ImportError:  # pragma: no cover - a platform without it
        return None
    return Server


def can_send_directly(transport: Any) -> bool:
    """
    Whether L{send_directly} may bypass the write queue: only on Twisted's
    own TCP server transport, whose queue it can see.
    """
    server = _tcp_server()
    return (
        server is not None
        and type(transport) is server
        and not getattr(transport, "TLS", False)
        and hasattr(transport, "_tempDataBuffer")
        and hasattr(transport, "dataBuffer")
        and hasattr(transport, "socket")
    )


def send_directly(transport: Any, data: bytes) -> None:
    """
    Send C{data} straight to the socket when Twisted's write queue is
    empty: C{transport.write} would only queue it for the next reactor
    turn, which costs two epoll updates and a wakeup per reply.  Whatever
    the socket does not take goes through C{transport.write} as usual, and
    from then on every write does, until the queue is empty again.
    Only for transports L{can_send_directly} accepted.
    """
    t = transport
    if not t.dataBuffer and not t._tempDataBuffer:
        if t.connected and not t.disconnecting:
            # The socket itself, not writeSomeData: that wraps the data in
            # a memoryview and the call in a retry loop, about 4.7k
            # instructions per reply.  (Python retries EINTR itself.)
            try:
                sent = t.socket.send(data)
            except OSError:
                # Would block, or the connection failed: Twisted's own write
                # meets the same and handles it.
                sent = 0
            if sent == len(data):
                return
            if sent:
                data = data[sent:]
    t.write(data)


def tls_writer(transport: Any) -> Callable[[bytes], None] | None:
    """
    A cheaper way to write on a connection that Twisted's TLS layer
    encrypts, or C{None} (not such a connection).

    Twisted's TLS transport holds small writes back until the next reactor
    turn so that it can merge them into one TLS record, and the encrypted
    bytes then wait one more turn for the socket.  The protocol already
    writes each batch of replies once, so neither wait buys anything here:
    this writes through the unbuffered C{TLSMemoryBIOProtocol.write} and
    hands the ciphertext to the socket at once.
    """
    try:
        from twisted.protocols.tls import TLSMemoryBIOProtocol
    except ImportError:  # pragma: no cover
        return None
    tls = (
        transport
        if isinstance(transport, TLSMemoryBIOProtocol)
        else getattr(transport, "protocol", None)
    )
    if not isinstance(tls, TLSMemoryBIOProtocol):
        return None
    write = TLSMemoryBIOProtocol.write
    # Below the TLS layer: the TCP transport itself (implicit TLS) or the
    # wrapper STARTTLS puts around it.
    below = getattr(tls, "transport", None)
    tcp: Any = getattr(below, "_connection", below)
    server = _tcp_server()
    if server is None or type(tcp) is not server or not hasattr(tcp, "_tempDataBuffer"):
        return lambda data: write(tls, data)

    socket_transport: Any = tcp

    def write_now(data: bytes) -> None:
        write(tls, data)
        t = socket_transport
        if t._tempDataBuffer and t.connected and not t.disconnecting:
            t.doWrite()

    return write_now


def set_read_size(transport: Any, size: int) -> None:
    """
    Read in bites of C{size} bytes from now on (Twisted's TCP transport
    reads 64 KiB per C{recv}; a large body streams in with fewer calls in
    bigger ones).  Only for transports L{can_send_directly} accepted.
    """
    if transport.bufferSize != size:
        transport.bufferSize = size


def tls_wrapper_protocol(transport: Any) -> Any:
    """
    The TLS layer Twisted's C{startTLS} put in front of us (to hand it
    bytes that arrived before it existed), or C{None}.
    """
    return getattr(transport, "protocol", None)


def sole_text_log_file() -> tuple[Any, Any] | None:
    """
    The observer and file of the one text log observer every log event goes
    to, or C{None}: that is what twistd sets up (C{--logfile}, or standard
    output with C{-n}), and what L{smtpsession._log.LineBatch} may write
    its lines to directly, formatted as that observer formats them.  Reads
    C{globalLogPublisher._observers} and C{FileLogObserver._outFile}.
    """
    from twisted.logger import FileLogObserver

    observer = _sole_observer()
    if observer is None:
        return None
    # The daemon's filter in front of it (smtpsession._daemon_log.DaemonLogObserver)
    # formats as the observer it wraps.
    text = getattr(observer, "text_observer", observer)
    if type(text) is not FileLogObserver:
        return None
    out = getattr(text, "_outFile", None)
    if out is None or getattr(text, "_encoding", "utf-8") is not None:
        return None  # not a text file: leave it to the observer
    return observer, out


def wrap_sole_observer(wrap: Callable[[Any], Any]) -> bool:
    """
    Put C{wrap(observer)} in place of the one log observer (twistd's), so
    that it sees every event first; C{False}, changing nothing, when there
    is not exactly one.  Reads C{globalLogPublisher._observers}; the
    replacement itself uses the public C{removeObserver}/C{addObserver}.
    """
    from twisted.logger import globalLogPublisher

    observer = _sole_observer()
    if observer is None:
        return False
    globalLogPublisher.removeObserver(observer)
    globalLogPublisher.addObserver(wrap(observer))
    return True


def still_sole_observer(observer: Any) -> bool:
    """Whether C{observer} is still the only one (see L{sole_text_log_file})."""
    sole = _sole_observer()
    return sole is not None and sole is observer


def _sole_observer() -> Any:
    """The one observer of the global log publisher, or C{None} (none, or several)."""
    from twisted.logger import globalLogPublisher

    observers = getattr(globalLogPublisher, "_observers", None)
    if not isinstance(observers, list) or len(observers) != 1:
        return None
    return observers[0]


def tcp_listen_address(endpoint: object) -> tuple[str, int, bool] | None:
    """
    The (interface, port, IPv6) a TCP or SSL server endpoint will listen
    on, as C{serverFromString} parsed it; C{None} for any other endpoint (or
    if Twisted no longer keeps them there).  Reads C{_interface} and C{_port}.
    """
    from twisted.internet import endpoints

    if isinstance(endpoint, endpoints.TCP6ServerEndpoint):
        ipv6 = True
    elif isinstance(endpoint, (endpoints.TCP4ServerEndpoint, endpoints.SSL4ServerEndpoint)):
        ipv6 = False
    else:
        return None
    interface = getattr(endpoint, "_interface", None)
    port = getattr(endpoint, "_port", None)
    if not isinstance(interface, str) or not isinstance(port, int):
        return None
    return interface, port, ipv6


def stop_accepting(port: Any) -> int | None:
    """
    The file descriptor of a listening port's socket, the port no longer
    accepting connections on it (the socket stays open, its queue filling
    for whoever accepts from a copy of it); C{None}, changing nothing, for a
    port that has no socket of its own.
    """
    fileno = getattr(port, "fileno", None)
    stop = getattr(port, "stopReading", None)
    if not callable(fileno) or not callable(stop):
        return None
    fd = fileno()
    if not isinstance(fd, int) or fd < 0:
        return None
    stop()
    # Closing this copy must not shutdown() the socket: that would stop it
    # listening in every process that shares it (accept then fails, EINVAL).
    if hasattr(port, "_shouldShutdown"):
        port._shouldShutdown = False
    return fd


#: What C{EPollReactor.doPoll} does with each ready socket, as read in the
#: Twisted releases L{dispatch_without_log_context} was measured with; the
#: shim's tests check that it still does exactly that.
EPOLL_DISPATCH = "log.callWithLogger(selectable, _drdw, selectable, fd, event)"


def dispatch_without_log_context(reactor: Any) -> bool:
    """
    Make an epoll reactor call each ready socket's C{doRead}/C{doWrite}
    directly (C{_doReadOrWrite}) instead of through
    C{twisted.python.log.callWithLogger}; C{True} once it does, C{False},
    changing nothing, for any other reactor.

    Why: C{callWithLogger} asks the connection for its log prefix, copies
    the legacy logging context into a new dict and calls through three more
    frames, on every read and write, to give C{twisted.python.log.msg}
    calls made meanwhile a C{system} field.  That is 3-4 microseconds per
    event on the benchmark machine, four events per small message, about a
    tenth of what the daemon spends per message (docs/benchmarks.md).
    smtpsession logs with C{twisted.logger}, whose events do not use that
    context.  What is lost: a traceback that Twisted itself logs through the
    legacy API while dispatching (a protocol raising from C{dataReceived})
    says C{-} instead of the connection's prefix in its C{system} field.
    An exception escaping C{_doReadOrWrite} is logged and swallowed, as
    C{callWithLogger} did.

    Only for the daemon, which owns its reactor: a library does not change
    a reactor its embedder may share with other protocols.
    """
    try:
        from twisted.internet.epollreactor import EPollReactor
    except ImportError:  # pragma: no cover - a platform without epoll
        return False
    if type(reactor) is not EPollReactor:
        return False
    if not all(hasattr(reactor, name) for name in ("_poller", "_selectables", "_doReadOrWrite")):
        return False
    if "doIteration" in vars(reactor):
        return True
    from twisted.logger import Logger

    log = Logger(namespace="smtpsession.reactor")
    selectables = reactor._selectables
    dispatch = reactor._doReadOrWrite

    def do_poll(timeout: float | None) -> None:
        try:
            events = reactor._poller.poll(-1 if timeout is None else timeout, len(selectables))
        except InterruptedError:
            return
        find = selectables.get
        for fd, event in events:
            selectable = find(fd)
            if selectable is None:
                continue
            try:
                dispatch(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                log.failure("unhandled error dispatching {selectable!r}", selectable=selectable)

    reactor.doIteration = do_poll  # type: ignore[method-assign]
    return True
