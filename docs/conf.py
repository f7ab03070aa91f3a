"""
Sphinx configuration of the smtpsession manual.

The build needs no network: no intersphinx, no remote images.  It must pass
with warnings as errors (``sphinx-build -W --keep-going -b html docs OUT``);
``tests/test_docs.py`` does exactly that.
"""

from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The source tree first, so the manual documents this checkout even when an
# older smtpsession is installed; then the local extensions.
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "_ext"))

import smtpsession  # noqa: E402

project = "smtpsession"
author = "the smtpsession authors"
copyright = "the smtpsession authors"
release = smtpsession.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "myst_parser",
    "smtpsession_docs",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "examples/README*"]
templates_path: list[str] = []

# Cross-references to smtpsession objects must resolve; references to other
# projects (Twisted, zope.interface, the standard library) cannot, because
# the build is offline (no intersphinx), and are shown as plain names.
# Names relative to the package (``SMTPServerOptions.size`` on a page whose
# current module is smtpsession) are checked too.
nitpicky = True
_ours = "|".join(["smtpsession", *smtpsession.__all__])
nitpick_ignore_regex = [
    (r"py:.*", rf"(?!(?:{_ours})\b).*"),
    # Private classes that public signatures name (the test harness's
    # clients hold the server's protocol object).
    (r"py:class", r"smtpsession\.protocol\.SMTPServerProtocol"),
]

autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_typehints_format = "short"
autodoc_preserve_defaults = True
# Handler subclasses (RecordingHandler) would otherwise repeat the base
# class's "Accept ..." docstrings for hooks that do something else.
autodoc_inherit_docstrings = False

myst_enable_extensions = ["colon_fence"]
myst_heading_anchors = 3

# Quotes stay as typed: reply texts, header names and code-like words are
# quoted in prose and must read exactly as the server sends them.
smartquotes = False

pygments_style = "sphinx"
html_theme = "alabaster"
html_title = f"smtpsession {release}"
html_static_path: list[str] = []
html_theme_options = {
    "description": "SMTP and LMTP servers for Twisted",
    "fixed_sidebar": True,
    "show_relbars": True,
}
html_show_sourcelink = False
