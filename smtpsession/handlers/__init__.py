"""
Built-in handlers: the ones people would otherwise write themselves.

- L{MaildirHandler}: store each message in a Maildir, crash-safely (the
  daemon's default);
- L{RelayHandler}: forward each message to an upstream SMTP or LMTP server,
  answering the client with the upstream's answers;
- L{AMQPHandler}: publish each message to RabbitMQ, answering C{250} only
  after the broker's confirm (needs pika, the C{amqp} extra, which is
  imported only when an L{AMQPHandler} is made);
- L{LogHandler}: print each message's envelope and headers (development);
- L{SinkHandler}: accept everything, keep nothing.

With the daemon, name them by class (C{--handler
smtpsession.handlers.RelayHandler}) or by their short names C{maildir},
C{relay}, C{amqp}, C{log} and C{sink}, and pass their arguments with
C{--handler-option KEY=VALUE}.
"""

from smtpsession.handlers.amqp import AMQPHandler
from smtpsession.handlers.log import LogHandler
from smtpsession.handlers.maildir import MaildirHandler
from smtpsession.handlers.relay import RelayHandler
from smtpsession.handlers.sink import SinkHandler

__all__ = ["AMQPHandler", "LogHandler", "MaildirHandler", "RelayHandler", "SinkHandler"]
