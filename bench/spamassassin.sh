#!/usr/bin/env bash
# Score a typical digest with Debian's SpamAssassin, network tests off (-L), and print the report.
#   bench/spamassassin.sh [output.eml]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-test-artifacts/email/typical-digest.eml}"
mkdir -p "$(dirname "$out")"
"${PYTHON:-.venv/bin/python}" - "$out" <<'PY'
import sys
from datetime import UTC, datetime

sys.path.insert(0, ".")
from digest.config import EmailSettings, SiteSettings
from digest.deliver.message import build_message
from digest.render import EmailRenderer
from tests.email_fixtures import load_papers, make_digest

site = SiteSettings(base_url="https://digest.example.org", title="Paper Digest")
settings = EmailSettings.model_validate(
    {
        "from": "Paper Digest <digest@digest.example.org>",
        "list_id": "daily.digest.example.org",
        "postal_address": "Paper Digest, 12 rue des Chercheurs, 75005 Paris, France",
    }
)
digest = make_digest(load_papers(), count=10, trending=3)
message = build_message(
    EmailRenderer(site=site, email=settings).digest(digest),
    to=digest.subscriber.email,
    email=settings,
    site=site,
    unsubscribe_url=digest.links.unsubscribe,
    unsubscribe_mailto=digest.links.unsubscribe_mailto,
    date=datetime.now(UTC),
)
# Scored as handed to the relay (no Received: line; a made-up relay IP would score itself).
open(sys.argv[1], "wb").write(message.data)
PY
report=$(spamassassin -L -t < "$out" | sed -n '/^Content analysis details/,$p')
echo "$report"
echo "$report" | grep -Eo '^Content analysis details:[^)]*\)' | sed 's/.*(\(.*\)points.*/score: \1/'
