"""
EXPN for mailing lists (on_expn): defining the hook turns EXPN on.

Who is on a list is private to most people, so only authenticated users
see it; everyone else gets the ``502`` of a server without EXPN (returning
``None`` gives the default reply).  The hook is a coroutine, as it would be
with a real directory to query.
"""

from smtpsession import Handler


class MailingLists(Handler):
    def __init__(self, lists):
        # list name -> member mailboxes
        self.lists = {name.lower(): list(members) for name, members in lists.items()}

    async def lookup(self, name):
        return self.lists.get(name.lower())  # a real one awaits its database

    async def on_expn(self, name, session):
        if session.user is None:
            return None  # 502 5.5.1, as if EXPN did not exist
        members = await self.lookup(name.partition("@")[0])
        if members is None:
            return False  # 550 5.1.1 Error: no such mailing list
        return [f"<{member}>" for member in members]  # 250, one line each
