"""Prometheus metrics (prometheus_client): what the pipeline counts, and the text endpoint.

The pipeline updates the counters; `digest serve` answers /metrics, and `digest schedule` and
`digest worker` serve them on `--metrics-port`. Queue depth is read from the database at each
scrape, so any process shows the whole queue.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    Counter,
    Histogram,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import REGISTRY, GaugeMetricFamily
from prometheus_client.registry import Collector

PAPERS_FETCHED = Counter("digest_papers_fetched", "New papers stored, per source", ["source"])
FETCH_FAILURES = Counter("digest_fetch_failures", "Failed fetches, per source", ["source"])
DELIVERIES = Counter(
    "digest_deliveries", "Deliveries finished by a sending pass, per outcome", ["outcome"]
)
SEND_SECONDS = Histogram(
    "digest_send_seconds",
    "Seconds a sending pass took per message it finished (pass time / messages)",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
CONTENT_TYPE = CONTENT_TYPE_LATEST


class _QueueDepth(Collector):
    """digest_queue_depth{status}: deliveries waiting (pending) or in flight (sending)."""

    def __init__(self, read: Callable[[], dict[str, int]]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "digest_queue_depth", "Deliveries waiting to be sent, by status", labels=["status"]
        )
        try:
            counts = self.read()
        except Exception:  # a scrape must answer even while the database is away
            return
        for status in ("pending", "sending"):
            family.add_metric([status], counts.get(status, 0))
        yield family


_queue: _QueueDepth | None = None


def watch_queue(read: Callable[[], dict[str, int]]) -> None:
    """Report the queue depth from `read` (deliveries per status) at every scrape."""
    global _queue
    if _queue is None:
        _queue = _QueueDepth(read)
        REGISTRY.register(_queue)
    else:
        _queue.read = read


def exposition() -> bytes:
    """The current metrics in the Prometheus text format."""
    return generate_latest(REGISTRY)


def serve(port: int, host: str = "127.0.0.1") -> None:
    """Serve /metrics on host:port from a background thread (schedule, worker)."""
    start_http_server(port, addr=host)
