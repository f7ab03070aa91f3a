"""
A RabbitMQ broker of the test's own: Debian's C{rabbitmq-server}, started
as a subprocess on 127.0.0.1 with its own ports, directories, node name and
Erlang cookie, and stopped (or paused, or killed) by the test.

Everything it runs is started here, and ended here by process id: its own
C{epmd}, on a free port (the node is told not to start one, so no
daemonised C{epmd} outlives the tests), and the broker's start script, with
the Erlang VM and its helpers under it (found by parentage in /proc).
L{RabbitMQ.stop} asks the script, which stops the VM as an operator's
SIGTERM would; L{RabbitMQ.kill} kills the VM outright; either way none of
those processes is left after.

The broker listens on 127.0.0.1 only: AMQP by its configuration, Erlang
distribution by C{inet_dist_use_interface}, C{epmd} by C{-address}.  It
starts in about five seconds, so tests share one per module.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import pika

from tests.conftest import require_program

#: Where Debian puts the server's scripts, beside the usual PATH.
_SEARCH = os.pathsep.join(["/usr/sbin", "/usr/lib/rabbitmq/bin"])


def rabbitmq_server() -> str:
    """
    The script that runs the broker as the current user.  Debian's
    C{/usr/sbin/rabbitmq-server} is a wrapper that switches to the
    C{rabbitmq} user (and its files) when run as root; the script it wraps
    is used instead when it is there.
    """
    path = os.environ.get("PATH", "") + os.pathsep + _SEARCH
    found = shutil.which("rabbitmq-server", path=path)
    if found is None:
        return require_program("rabbitmq-server")  # fails (or skips) with the reason
    real = Path(os.path.realpath(found))
    if real.name == "rabbitmq-script-wrapper":
        wrapped = real.with_name("rabbitmq-server")
        if wrapped.exists():
            return str(wrapped)
    return found


#: Ports are chosen below Linux's ephemeral range (32768 up): a port the
#: kernel gave out for a moment could be any client's source port by the
#: time the broker binds it (Erlang's distribution check then fails).
_PORTS = (20000, 32000)
_taken: set[int] = set()


def free_port() -> int:
    """A port free on 127.0.0.1, outside the ephemeral range, not given out before."""
    for _ in range(500):
        port = random.randrange(*_PORTS)
        if port in _taken:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _taken.add(port)
        return port
    raise AssertionError("no free port found")


def _processes() -> dict[int, tuple[str, int]]:
    """Every process: its state letter and its parent's PID (Linux /proc)."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # gone meanwhile
        found[int(stat.parent.name)] = (fields[0], int(fields[1]))
    return found


class RabbitMQ:
    """One broker: L{start}, L{stop}, L{kill}, L{pause}, L{resume}, L{close}."""

    def __init__(self, base: Path) -> None:
        self.program = rabbitmq_server()
        self.epmd_program = shutil.which("epmd") or require_program("epmd")
        self.base = base
        self.port = free_port()
        self.dist_port = free_port()
        self.epmd_port = free_port()
        self.node = f"smtpsession-test-{os.getpid()}@localhost"
        self.proc: subprocess.Popen[bytes] | None = None
        self.epmd: subprocess.Popen[bytes] | None = None
        for sub in ("home", "mnesia", "log"):
            (base / sub).mkdir(parents=True, exist_ok=True)
        (base / "rabbitmq.conf").write_text(
            f"listeners.tcp.default = 127.0.0.1:{self.port}\n"
            "loopback_users = none\n"
            "log.console = true\n"
            "log.file = false\n"
        )
        (base / "enabled_plugins").write_text("[].\n")
        (base / "rabbitmq-env.conf").write_text("")

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def env(self) -> dict[str, str]:
        base = self.base
        env = dict(os.environ)
        env.update(
            HOME=str(base / "home"),  # the Erlang cookie
            RABBITMQ_NODENAME=self.node,
            RABBITMQ_MNESIA_BASE=str(base / "mnesia"),
            RABBITMQ_LOG_BASE=str(base / "log"),
            RABBITMQ_CONFIG_FILE=str(base / "rabbitmq.conf"),
            RABBITMQ_CONF_ENV_FILE=str(base / "rabbitmq-env.conf"),
            RABBITMQ_ENABLED_PLUGINS_FILE=str(base / "enabled_plugins"),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS=(
                "-kernel inet_dist_use_interface {127,0,0,1} -start_epmd false"
            ),
            ERL_EPMD_PORT=str(self.epmd_port),
            ERL_EPMD_ADDRESS="127.0.0.1",
        )
        return env

    # -- lifecycle -------------------------------------------------------------

    def start(self, timeout: float = 60.0) -> None:
        """Start the broker (and our epmd, the first time); wait until it serves AMQP."""
        assert self.proc is None, "already running"
        if self.epmd is None:
            self.epmd = subprocess.Popen(
                [self.epmd_program, "-port", str(self.epmd_port), "-address", "127.0.0.1"],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self._wait_for_port(self.epmd_port, 10)  # the node will not start one
        with open(self.base / "log" / "console.log", "ab") as out:
            self.proc = subprocess.Popen(
                [self.program],
                cwd=self.base,
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # no terminal signals from the test's session
            )
        self.wait_ready(timeout)

    @staticmethod
    def _wait_for_port(port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"nothing listens on 127.0.0.1:{port}") from None
                time.sleep(0.02)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"rabbitmq-server exited:\n{self.console()}")
            try:
                # A plain connect first: pika logs every refused attempt.
                socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
                self.connection().close()
                return
            except (OSError, pika.exceptions.AMQPError):
                if time.monotonic() > deadline:
                    raise AssertionError(
                        f"rabbitmq-server not ready in {timeout:g} s:\n{self.console()}"
                    ) from None
                time.sleep(0.1)

    def console(self) -> str:
        path = self.base / "log" / "console.log"
        return path.read_text(errors="replace")[-4000:] if path.exists() else ""

    # The processes this broker is made of: the start script (self.proc),
    # the Erlang VM under it, and the VM's helpers (erl_child_setup,
    # inet_gethost), which start sessions of their own: found by parentage,
    # not by process group.

    def _tree(self) -> list[int]:
        """The script and every process under it, as /proc shows them now."""
        assert self.proc is not None
        children: dict[int, list[int]] = {}
        for pid, (_, ppid) in _processes().items():
            children.setdefault(ppid, []).append(pid)
        tree, todo = [], [self.proc.pid]
        while todo:
            pid = todo.pop()
            tree.append(pid)
            todo.extend(children.get(pid, []))
        return tree

    def _signal(self, pids: list[int], sig: int) -> None:
        for pid in pids:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, timeout: float = 30.0) -> None:
        """
        Shut the broker down as an operator would: SIGTERM to the start
        script, which stops the Erlang VM and waits for it (SIGKILL if
        that takes too long).
        """
        if self.proc is None:
            return
        tree = self._tree()
        self._signal(tree, signal.SIGCONT)  # in case it was paused
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pass
        self._reap(tree)

    def kill(self) -> None:
        """
        The broker dies at once (SIGKILL to the Erlang VM and its helpers):
        no goodbye to its clients.  The start script reaps the VM and exits.
        """
        if self.proc is None:
            return
        tree = self._tree()
        self._signal(tree[1:], signal.SIGKILL)
        self._signal(tree[:1], signal.SIGCONT)  # a paused script must run to exit
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        self._reap(tree)

    def _reap(self, tree: list[int]) -> None:
        """Make sure none of these processes is left, then forget the broker."""
        assert self.proc is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            running = [pid for pid in tree if _processes().get(pid, ("Z", 0))[0] != "Z"]
            if self.proc.poll() is not None and not running:
                break
            self._signal(running, signal.SIGKILL)
            time.sleep(0.05)
        self.proc.wait(10)
        self.proc = None
        # Those whose parent went first are reaped by init: not long.
        deadline = time.monotonic() + 5
        while any(pid in _processes() for pid in tree) and time.monotonic() < deadline:
            time.sleep(0.05)

    def pause(self) -> None:
        """Freeze the broker (SIGSTOP): connections stay open, nothing answers."""
        self._signal(self._tree(), signal.SIGSTOP)

    def resume(self) -> None:
        if self.proc is not None:
            self._signal(self._tree(), signal.SIGCONT)

    def close(self) -> None:
        """Stop the broker (cleanly: the VM ends its own helpers) and our epmd."""
        try:
            self.stop(timeout=15)
        finally:
            if self.epmd is not None:
                self.epmd.kill()
                self.epmd.wait(10)
                self.epmd = None

    # -- a client for the test -------------------------------------------------

    def connection(self) -> pika.BlockingConnection:
        params = pika.URLParameters(
            self.url + "?connection_attempts=1&socket_timeout=2&blocked_connection_timeout=5"
        )
        return pika.BlockingConnection(params)

    def call(self, fn: Any) -> Any:
        """C{fn(channel)} on a fresh connection, closed afterwards."""
        connection = self.connection()
        try:
            return fn(connection.channel())
        finally:
            if connection.is_open:
                connection.close()

    def get_all(self, queue: str, limit: int = 1000) -> list[tuple[Any, bytes]]:
        """Every message in C{queue} (removed from it): (properties, body) pairs."""

        def drain(channel: Any) -> list[tuple[Any, bytes]]:
            out = []
            for _ in range(limit):
                method, properties, body = channel.basic_get(queue, auto_ack=True)
                if method is None:
                    break
                out.append((properties, body))
            return out

        result: list[tuple[Any, bytes]] = self.call(drain)
        return result

    def count(self, queue: str) -> int:
        def count(channel: Any) -> int:
            return int(channel.queue_declare(queue, passive=True).method.message_count)

        result: int = self.call(count)
        return result

    def delete_queue(self, queue: str) -> None:
        self.call(lambda channel: channel.queue_delete(queue))
