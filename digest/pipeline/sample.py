"""`digest send-test`: a sample digest for the operator's own inbox, through the configured relay."""

from __future__ import annotations

from dataclasses import replace

from digest.deliver.transport import SendResult
from digest.models import Digest, Subscriber
from digest.pipeline.batch import envelope_for
from digest.pipeline.composing import preview
from digest.pipeline.context import Context, run_sync
from digest.pipeline.mails import MailError


def send_sample(ctx: Context, to: str) -> None:
    """Send a sample digest (the first example profile, ranked against the stored papers) to `to`,
    for checking SMTP, DKIM and rendering in a real inbox. Nothing is recorded.

    Raises MailError when there is nothing to show or the relay does not take it (RelayError
    when the relay refuses us altogether).
    """
    keywords = ctx.settings.examples[0].keywords if ctx.settings.examples else "learning"
    matches = preview(ctx, keywords, limit=ctx.settings.digest.max_papers)
    if not matches:
        raise MailError("no stored paper to show in a sample digest: run `digest fetch` first")
    reader = Subscriber(email=to, keywords=keywords, max_papers=ctx.settings.digest.max_papers)
    digest = Digest(reader, ctx.now().date(), tuple(matches), links=ctx.links(reader))
    rendered = ctx.renderer.digest(digest)
    rendered = replace(rendered, subject=f"[test] {rendered.subject}")
    results: list[SendResult] = []
    envelope = envelope_for(ctx, 0, to, rendered, digest.links)
    run_sync(ctx.transport().send_many([envelope], results.append))
    if not results or not results[0].ok:
        error = results[0].error if results else "no answer"
        raise MailError(f"the relay did not take the sample digest for {to}: {error}")
