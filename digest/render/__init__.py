"""Pure rendering: digest data in, email (subject, HTML, text) and Atom/RSS documents out.

text.py cleans untrusted feed text, views.py shapes papers for templates, mjml.py compiles and
checks the MJML layouts, email.py fills them per reader, feeds.py writes Atom and RSS.
"""

from digest.render.email import HTML_SIZE_LIMIT, TEMPLATE_NAMES, EmailRenderer, TemplateError
from digest.render.feeds import FeedEntry, atom_feed, entry_id, rss_feed
from digest.render.mjml import check_html, compile_mjml, lint_mjml

__all__ = [
    "HTML_SIZE_LIMIT",
    "TEMPLATE_NAMES",
    "EmailRenderer",
    "FeedEntry",
    "TemplateError",
    "atom_feed",
    "check_html",
    "compile_mjml",
    "entry_id",
    "lint_mjml",
    "rss_feed",
]
