"""The day's work in order: fetch -> plan -> rank -> render -> deliver.

The only package that knows the stage order. Entry points (cli, web, scheduler) build a Context
and call one function here; the stages below (sources, store, ranking, render, deliver) never call
each other. One module per step of the day.
"""

from digest.pipeline.archive import ARCHIVE_DAYS, ArchivedDigest, archive, recorded_digest
from digest.pipeline.clock import reset_clock
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
from digest.pipeline.health import (
    SourceHealth,
    Status,
    fetched_problems,
    note_pass,
    note_relay,
    source_problems,
    status,
    watch_queue,
)
from digest.pipeline.mails import MailError, send_mails_now, send_queued_mails
from digest.pipeline.planning import due_date, local_date, plan
from digest.pipeline.report import Outcome, ReaderOutcome, SendReport
from digest.pipeline.running import RunReport, outcome_json, run
from digest.pipeline.sample import send_sample
from digest.pipeline.scheduling import PassReport, schedule_pass
from digest.pipeline.steering import (
    SteerError,
    SteerPlan,
    apply_steer,
    describe,
    plan_steer,
    undo_steer,
)
from digest.pipeline.upkeep import Pruned, housekeeping
from digest.pipeline.worker import send_pending, worker_id

__all__ = [
    "ARCHIVE_DAYS",
    "ArchivedDigest",
    "Context",
    "FetchReport",
    "MailError",
    "Outcome",
    "PassReport",
    "Progress",
    "Pruned",
    "ReaderOutcome",
    "RunReport",
    "SendReport",
    "SourceHealth",
    "Status",
    "SteerError",
    "SteerPlan",
    "Window",
    "apply_steer",
    "archive",
    "build_context",
    "candidates",
    "compose",
    "describe",
    "due_date",
    "explain",
    "fetch",
    "fetched_problems",
    "first_window",
    "housekeeping",
    "local_date",
    "note_pass",
    "note_relay",
    "outcome_json",
    "plan",
    "plan_steer",
    "preview",
    "reader_feed",
    "recorded_digest",
    "reset_clock",
    "run",
    "run_sync",
    "schedule_pass",
    "search_feed",
    "send_mails_now",
    "send_pending",
    "send_queued_mails",
    "send_sample",
    "source_problems",
    "status",
    "undo_steer",
    "utcnow",
    "watch_queue",
    "worker_id",
    "write_reader_feeds",
]
