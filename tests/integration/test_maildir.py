"""
The Maildir handler against real clients on 127.0.0.1: what lands in new/,
the trace headers, the order of the durable steps, per-recipient folders,
and that a message that fails on the way never reaches new/ and leaves no
file in tmp/.
"""

from __future__ import annotations

import errno
import os
import re
import smtplib
from pathlib import Path
from typing import Any

import pytest

from smtpsession import SMTPServerOptions
from smtpsession.handlers import MaildirHandler
from smtpsession.handlers.maildir import folder_name
from smtpsession.testing import serve
from tests.conftest import files, wait_until
from tests.rawsmtp import RawClient

BODY = b"Subject: stored\r\nMessage-ID: <m1@example.org>\r\n\r\nHello.\r\n.dotted line\r\n"


def options(**kw: Any) -> SMTPServerOptions:
    kw.setdefault("name", "mx.test")
    kw.setdefault("disable_reverse_lookup", True)
    return SMTPServerOptions(**kw)


def test_message_is_stored_with_trace_headers(tmp_path: Path) -> None:
    """One message: one file in new/, nothing in tmp/ or cur/, the body as
    received after a Return-Path and a Received header that names the
    client, the transmission type and the session id."""
    maildir = tmp_path / "Maildir"
    handler = MaildirHandler(str(maildir), hostname="mx.test")
    with serve(handler, options()) as server, smtplib.SMTP(*server.address) as client:
        client.ehlo("client.example")
        client.sendmail("alice@example.org", ["bob@example.com"], BODY)
    [stored] = files(maildir / "new")
    assert files(maildir / "tmp") == [] and files(maildir / "cur") == []
    data = stored.read_bytes()
    assert data.endswith(b"\r\n\r\nHello.\r\n.dotted line\r\n")
    head, _, body = data.partition(b"Subject: stored")
    assert body.startswith(b"\r\nMessage-ID")
    text = head.decode()
    assert text.startswith("Return-Path: <alice@example.org>\r\nReceived: from client.example ([127.0.0.1])\r\n")
    assert re.search(r"\tby mx\.test \(smtpsession\) with ESMTP id [0-9a-z]+\.1\r\n", text)
    assert "\tfor <bob@example.com>; " in text
    assert stored.stat().st_mode & 0o777 == 0o600


def test_trace_headers_can_be_turned_off(tmp_path: Path) -> None:
    """received=False, return_path=False: the file is exactly the body."""
    maildir = tmp_path / "Maildir"
    handler = MaildirHandler(str(maildir), received="no", return_path="false")
    with serve(handler, options()) as server, smtplib.SMTP(*server.address) as client:
        client.sendmail("a@example.org", ["b@example.com", "c@example.com"], BODY)
    [stored] = files(maildir / "new")
    assert stored.read_bytes() == BODY.replace(b"\r\n..", b"\r\n.")


def test_names_are_unique_and_follow_the_maildir_spec(tmp_path: Path) -> None:
    """Many messages in one second get distinct names of the form
    time.M<usec>P<pid>Q<n>R<random>.host."""
    maildir = tmp_path / "Maildir"
    with serve(MaildirHandler(str(maildir)), options()) as server:
        with smtplib.SMTP(*server.address) as client:
            for i in range(20):
                client.sendmail("a@example.org", ["b@example.com"], f"n: {i}\r\n\r\n".encode())
    names = [p.name for p in files(maildir / "new")]
    assert len(names) == 20 == len(set(names))
    for name in names:
        assert re.fullmatch(rf"\d+\.M\d+P{os.getpid()}Q\d+R[0-9a-f]{{16}}\.[^/:]+", name), name


def test_durable_steps_happen_before_the_reply(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file is fsynced, then renamed into new/, then new/ is fsynced,
    and all of that is done when the client reads 250."""
    maildir = tmp_path / "Maildir"
    events: list[str] = []
    real_fsync, real_rename = os.fsync, os.rename

    def fsync(fd: int) -> None:
        target = os.readlink(f"/proc/self/fd/{fd}")
        if target.startswith(str(maildir)):
            events.append("fsync " + os.path.relpath(target, maildir).split(os.sep)[0])
        real_fsync(fd)

    def rename(src: Any, dst: Any) -> None:
        real_rename(src, dst)
        if str(dst).startswith(str(maildir)):
            events.append("rename")

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "rename", rename)
    with serve(MaildirHandler(str(maildir)), options()) as server:
        with smtplib.SMTP(*server.address) as client:
            client.ehlo()
            client.mail("a@example.org")
            client.rcpt("b@example.com")
            code, _ = client.data(BODY)
            assert code == 250
            seen_at_reply = list(events)
    assert seen_at_reply == ["fsync tmp", "rename", "fsync new"]


def test_per_recipient_folders(tmp_path: Path) -> None:
    """per_recipient: one Maildir per recipient (lower-cased, path-safe),
    each with the same complete message; the shared tmp/ is left empty."""
    maildir = tmp_path / "Maildir"
    handler = MaildirHandler(str(maildir), per_recipient=True)
    with serve(handler, options()) as server, smtplib.SMTP(*server.address) as client:
        client.sendmail(
            "a@example.org", ["Bob@Example.com", "carol@example.com", "a/b@example.com"], BODY
        )
    folders = sorted(p.name for p in maildir.iterdir() if p.name not in ("tmp", "new", "cur"))
    assert folders == ["a%2Fb@example.com", "bob@example.com", "carol@example.com"]
    contents = set()
    for folder in folders:
        [stored] = files(maildir / folder / "new")
        contents.add(stored.read_bytes())
    assert len(contents) == 1 and contents.pop().endswith(b"Hello.\r\n.dotted line\r\n")
    assert files(maildir / "tmp") == [] and files(maildir / "new") == []


def test_folder_names_cannot_escape() -> None:
    """Folder names never contain a slash and never start with a dot, so a
    recipient cannot name a folder outside the Maildir or a hidden one."""
    for address in ["../x@example.com", ".@x", "..", "a/../../b@x", "", "\x00@x"]:
        name = folder_name(address)
        assert "/" not in name and not name.startswith(".") and name, (address, name)
        assert "\x00" not in name
    assert folder_name("Bob@Example.COM") == "bob@example.com"


def test_lmtp_per_recipient_answers(tmp_path: Path) -> None:
    """Under LMTP with per-recipient folders, a recipient whose folder
    cannot be written gets 451 while the others get 250 and their copy."""
    maildir = tmp_path / "Maildir"
    maildir.mkdir()
    (maildir / "broken@example.com").write_text("a file where a folder should be")
    handler = MaildirHandler(str(maildir), per_recipient=True)
    with serve(handler, options(lmtp=True)) as server:
        with smtplib.LMTP(*server.address) as client:
            client.ehlo()
            client.mail("a@example.org")
            client.rcpt("ok@example.com")
            client.rcpt("broken@example.com")
            client.putcmd("data")
            code, _ = client.getreply()
            assert code == 354
            client.send(BODY.replace(b"\r\n.", b"\r\n..") + b".\r\n")  # dot-stuffed
            answers = [client.getreply()[0], client.getreply()[0]]
    assert answers == [250, 451]
    assert len(files(maildir / "ok@example.com" / "new")) == 1
    assert files(maildir / "tmp") == []


def test_smtp_per_recipient_is_all_or_nothing(tmp_path: Path) -> None:
    """Under SMTP there is one answer: if one folder fails, the client gets
    451 and no folder keeps a copy (so a retry makes no duplicate)."""
    maildir = tmp_path / "Maildir"
    maildir.mkdir()
    (maildir / "zz-broken@example.com").write_text("not a folder")
    handler = MaildirHandler(str(maildir), per_recipient=True)
    with serve(handler, options()) as server, smtplib.SMTP(*server.address) as client:
        with pytest.raises(smtplib.SMTPDataError) as info:
            client.sendmail("a@example.org", ["aa-ok@example.com", "zz-broken@example.com"], BODY)
    assert info.value.smtp_code == 451
    assert files(maildir / "aa-ok@example.com" / "new") == []
    assert files(maildir / "tmp") == []


def test_client_gone_mid_body_leaves_nothing(tmp_path: Path) -> None:
    """A client that disconnects in the middle of the body: nothing in new/,
    and the partial file in tmp/ is removed."""
    maildir = tmp_path / "Maildir"
    with serve(MaildirHandler(str(maildir)), options()) as server:
        raw = RawClient(*server.address)
        raw.start_message("a@example.org", ["b@example.com"])
        raw.send(b"Subject: half\r\n\r\n" + b"x" * 200_000)
        wait_until(lambda: len(files(maildir / "tmp")) == 1)
        raw.close()
        wait_until(lambda: files(maildir / "tmp") == [])
    assert files(maildir / "new") == []


def test_refused_body_leaves_nothing(tmp_path: Path) -> None:
    """A body the server refuses (bare LF: SMTP smuggling guard) gets 5xx
    and leaves no file anywhere."""
    maildir = tmp_path / "Maildir"
    with serve(MaildirHandler(str(maildir)), options()) as server:
        raw = RawClient(*server.address)
        raw.start_message("a@example.org", ["b@example.com"])
        raw.send(b"Subject: bad\r\n\r\nline one\nline two\r\n.\r\n")
        code, _ = raw.reply()
        raw.close()
    assert code == 554
    assert files(maildir / "new") == [] and files(maildir / "tmp") == []


def test_oversized_message_is_refused(tmp_path: Path) -> None:
    """Over the size option (even without reject_oversized) the Maildir
    handler answers 552 and keeps nothing."""
    maildir = tmp_path / "Maildir"
    with serve(MaildirHandler(str(maildir)), options(size=1000)) as server:
        with smtplib.SMTP(*server.address) as client:
            client.ehlo()
            client.mail("a@example.org")  # no SIZE= declared: found while receiving
            client.rcpt("b@example.com")
            code, _ = client.data(b"x" * 5000)
    assert code == 552
    assert files(maildir / "new") == [] and files(maildir / "tmp") == []


def test_full_disk_is_a_temporary_failure(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ENOSPC while committing: 452 4.3.1 (try later), nothing kept."""
    maildir = tmp_path / "Maildir"

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", fsync)
    with serve(MaildirHandler(str(maildir)), options()) as server:
        with smtplib.SMTP(*server.address) as client:
            with pytest.raises(smtplib.SMTPDataError) as info:
                client.sendmail("a@example.org", ["b@example.com"], BODY)
    assert info.value.smtp_code == 452
    assert b"4.3.1" in info.value.smtp_error
    assert files(maildir / "new") == [] and files(maildir / "tmp") == []


def test_unwritable_maildir_is_a_temporary_failure(tmp_path: Path) -> None:
    """A Maildir path that cannot be created: 451 4.3.0, and the server
    goes on (the next connection is served)."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("x")
    handler = MaildirHandler(str(blocker / "Maildir"))
    with serve(handler, options()) as server:
        for _ in range(2):
            with smtplib.SMTP(*server.address) as client:
                with pytest.raises(smtplib.SMTPDataError) as info:
                    client.sendmail("a@example.org", ["b@example.com"], BODY)
                assert info.value.smtp_code == 451
