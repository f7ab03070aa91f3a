"""
The floor under any Twisted SMTP server: a protocol that answers each line
of smtp-source's dialogue with a fixed reply (no parsing, no checks, direct
socket writes) and skips bodies up to CRLF.CRLF.  Its CPU per message under a
workload is what Twisted's reactor and the system calls cost by themselves.

usage: python twisted_floor.py PORT [BUSY_US [batch] [lean]]   (listens on 127.0.0.1 only)
then e.g. smtp-source -s 50 -m 20000 -l 1024 -d 127.0.0.1:PORT, and compare the
server's CPU time per message with smtpsession's under the same load.
BUSY_US adds that many microseconds of busy work to every read: a slower
server with the same system calls (tools/cpu_split.sh uses it).  "batch" holds
each reactor turn's replies back and sends them together at its end, as
smtpsession does with several busy clients (protocol._TurnSender).
"""

import sys
import time

from twisted.internet import protocol, reactor
from twisted.internet.endpoints import serverFromString


class Floor(protocol.Protocol):
    def connectionMade(self):
        self.in_data = False
        self.pending = b""
        self.transport.setTcpNoDelay(True)
        self.transport.write(b"220 floor ESMTP\r\n")

    def send(self, data):
        if not BATCH:
            self.send_now(data)
        elif self.pending:
            self.pending += data
        else:
            self.pending = data
            DUE.append(self)
            if len(DUE) == 1:
                reactor.callLater(0, send_due)

    def send_now(self, data):
        t = self.transport
        if not t.dataBuffer and not t._tempDataBuffer:
            sent = t.writeSomeData(data)
            if sent == len(data):
                return
            data = data[sent:]
        t.write(data)

    def dataReceived(self, data):
        if BUSY:
            until = time.perf_counter() + BUSY
            while time.perf_counter() < until:
                pass
        if self.in_data:
            if data.endswith(b"\r\n.\r\n"):
                self.in_data = False
                self.send(b"250 OK\r\n")
            return
        for line in data.split(b"\r\n")[:-1]:
            verb = line[:4].upper()
            if verb == b"DATA":
                self.in_data = True
                self.send(b"354 go ahead\r\n")
            elif verb == b"QUIT":
                data, self.pending = self.pending + b"221 bye\r\n", b""
                self.transport.write(data)
                self.transport.loseConnection()
            elif verb == b"EHLO":
                self.send(b"250-floor\r\n250 PIPELINING\r\n")
            else:
                self.send(b"250 OK\r\n")


def send_due():
    due = DUE[:]
    del DUE[:]
    for p in due:
        data, p.pending = p.pending, b""
        if data:
            p.send_now(data)


BUSY = float(sys.argv[2]) / 1e6 if len(sys.argv) > 2 else 0.0
BATCH = "batch" in sys.argv[3:]
LEAN = "lean" in sys.argv[3:]
DUE = []

if __name__ == "__main__":
    if LEAN:
        from smtpsession._twisted_shim import dispatch_without_log_context

        assert dispatch_without_log_context(reactor)
    factory = protocol.ServerFactory()
    factory.protocol = Floor
    serverFromString(reactor, f"tcp:{int(sys.argv[1])}:interface=127.0.0.1").listen(factory)
    reactor.run()
