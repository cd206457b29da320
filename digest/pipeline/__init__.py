"""The day's work in order: fetch -> plan -> rank -> render -> deliver.

The only package that knows the stage order. Entry points (cli, web, scheduler) build a Context
and call one function here; the stages below (sources, store, ranking, render, deliver) never call
each other. One module per step of the day.
"""

from digest.pipeline.composing import (
    Window,
    candidates,
    compose,
    explain,
    first_window,
    preview,
)
from digest.pipeline.context import Context, Progress, build_context, run_sync, utcnow
from digest.pipeline.feeding import reader_feed, search_feed, write_reader_feeds
from digest.pipeline.fetching import FetchReport, fetch
from digest.pipeline.mails import MailError, send_confirmation, send_goodbye
from digest.pipeline.planning import is_due, local_date, plan
from digest.pipeline.running import RunReport, run, write_previews
from digest.pipeline.sending import (
    DeliveryOutcome,
    SendReport,
    process_claims,
    send_pending,
    worker_id,
)
from digest.pipeline.upkeep import housekeeping

__all__ = [
    "Context",
    "DeliveryOutcome",
    "FetchReport",
    "MailError",
    "Progress",
    "RunReport",
    "SendReport",
    "Window",
    "build_context",
    "candidates",
    "compose",
    "explain",
    "fetch",
    "first_window",
    "housekeeping",
    "is_due",
    "local_date",
    "plan",
    "preview",
    "process_claims",
    "reader_feed",
    "run",
    "run_sync",
    "search_feed",
    "send_confirmation",
    "send_goodbye",
    "send_pending",
    "utcnow",
    "worker_id",
    "write_previews",
    "write_reader_feeds",
]
