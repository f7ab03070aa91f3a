"""
Store each message in a database, streaming: the body is written in pieces
of about a megabyte as it arrives, so a 100 MB message never sits in memory.

The database work runs in threads (``twisted.enterprise.adbapi``), so the
server keeps serving other clients meanwhile.  A message is marked complete
only after its last piece is written; if the client disconnects halfway,
the pieces already stored are deleted.  Mail is never lost (250 is sent only
after the commit) and never half-stored.
"""

from twisted.enterprise import adbapi

from smtpsession import Handler

PIECE = 1024 * 1024

SCHEMA = [
    """CREATE TABLE IF NOT EXISTS messages (
        id INTEGER PRIMARY KEY,
        session TEXT NOT NULL,
        mail_from TEXT NOT NULL,
        rcpt_to TEXT NOT NULL,
        size INTEGER,
        complete INTEGER NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE IF NOT EXISTS pieces (
        message INTEGER NOT NULL REFERENCES messages(id),
        seq INTEGER NOT NULL,
        data BLOB NOT NULL,
        PRIMARY KEY (message, seq)
    )""",
]


def _create(cursor):
    for statement in SCHEMA:
        cursor.execute(statement)


def _begin(cursor, session_id, mail_from, rcpt_to):
    cursor.execute(
        "INSERT INTO messages (session, mail_from, rcpt_to) VALUES (?, ?, ?)",
        (session_id, mail_from, rcpt_to),
    )
    return cursor.lastrowid


def _forget(cursor, message_id):
    cursor.execute("DELETE FROM pieces WHERE message = ?", (message_id,))
    cursor.execute("DELETE FROM messages WHERE id = ?", (message_id,))


class SQLiteStore(Handler):
    def __init__(self, path="mail.sqlite3"):
        # One connection: SQLite serialises writers anyway.
        self.pool = adbapi.ConnectionPool(
            "sqlite3", path, check_same_thread=False, cp_min=1, cp_max=1
        )
        self.ready = None

    async def on_data(self, stream, session):
        if self.ready is None:
            self.ready = self.pool.runInteraction(_create)
        await self.ready
        envelope = session.envelope
        message_id = await self.pool.runInteraction(
            _begin,
            session.id,
            envelope.mail_from.address,
            ",".join(r.address for r in envelope.rcpt_to),
        )
        try:
            seq = 0
            pending = []
            pending_size = 0
            async for chunk in stream:
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= PIECE:
                    await self._piece(message_id, seq, b"".join(pending))
                    seq += 1
                    pending, pending_size = [], 0
            if pending:
                await self._piece(message_id, seq, b"".join(pending))
            await self.pool.runOperation(
                "UPDATE messages SET complete = 1, size = ? WHERE id = ?",
                (stream.byte_length, message_id),
            )
        except Exception:
            await self.pool.runInteraction(_forget, message_id)
            raise
        return f"OK: stored as message {message_id}"

    def _piece(self, message_id, seq, data):
        return self.pool.runOperation(
            "INSERT INTO pieces (message, seq, data) VALUES (?, ?, ?)",
            (message_id, seq, data),
        )
