"""
The pytest plugin registered by smtpsession (entry point ``pytest11``).

It only defines fixtures; it has no effect on test collection or reporting.
"""
