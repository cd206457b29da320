"""Log output for every entry point: time and level on each line, as text or JSON (`[logging]`).

Readers' addresses are shortened (a***@uni.example) in every line, tracebacks included: logs go
to files and collectors every day, and need no reader's full address.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from datetime import UTC, datetime

from digest.config import LoggingSettings

_ADDRESS = re.compile(
    r"([A-Za-z0-9!#$%&'*+/=?^_`{|}~-])[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]*@([A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+)"
)
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def mask_addresses(text: str) -> str:
    """Mail addresses shortened to their first letter and domain (a***@example.org)."""
    return _ADDRESS.sub(r"\1***@\2", text)


class MaskAddresses(logging.Filter):
    """Keeps readers' full addresses out of the log, tracebacks included."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = mask_addresses(record.getMessage()), None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = mask_addresses(record.exc_text)
        return True


class TextFormatter(logging.Formatter):
    """`2026-12-01 06:00:00,123 INFO digest.run: ...` (UTC)."""

    converter = time.gmtime  # type: ignore[assignment]

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message (and error)."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info or record.exc_text:
            entry["error"] = record.exc_text or self.formatException(record.exc_info)  # type: ignore[arg-type]
        return json.dumps(entry, ensure_ascii=False)


class _Stderr(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever sys.stderr is when a line is logged (test runners swap it)."""

    @property  # type: ignore[override]
    def stream(self) -> object:
        return sys.stderr

    @stream.setter
    def stream(self, _value: object) -> None:
        pass


def configure(settings: LoggingSettings, *, quiet: bool = False) -> None:
    """Send log lines to stderr in the configured format; with --quiet only warnings and errors."""
    handler = _Stderr()
    handler.setFormatter(JsonFormatter() if settings.format == "json" else TextFormatter())
    handler.addFilter(MaskAddresses())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = getattr(logging, settings.level.upper())
    root.setLevel(max(level, logging.WARNING) if quiet else level)
    for chatty in ("httpx", "httpcore", "alembic"):
        # their info lines (each job start, each request) drown ours; warnings still show
        logging.getLogger(chatty).setLevel(max(level, logging.WARNING))
