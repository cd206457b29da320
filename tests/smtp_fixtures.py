"""A real aiosmtpd relay on 127.0.0.1 that misbehaves on chosen recipients, with TLS and AUTH.

Rules say what the relay does to a recipient: answer 421, 451 or 550 to RCPT, drop the
connection at RCPT, or take the message and drop the connection before its 250 ("lost reply").
A rule may apply only the first N times. Use as a pytest plugin: `pytest_plugins = [...]`.
"""

from __future__ import annotations

import asyncio
import os
import ssl
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

from tests.conftest import free_port

USER, PASSWORD = "digest", "s3cret-relay"


@dataclass
class Rule:
    """What the relay does to one recipient: an SMTP reply, "drop" or "drop-after-data"."""

    action: str
    times: int | None = None
    """Apply this many times, then behave; None: always."""


@dataclass
class Relay:
    """The relay's address, its rules and everything it accepted."""

    host: str
    port: int
    rules: dict[str, Rule] = field(default_factory=dict)
    accepted: list[tuple[str, bytes]] = field(default_factory=list)
    sessions: set[int] = field(default_factory=set)
    refusals: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def copies(self) -> Counter[str]:
        """How many messages each recipient received."""
        with self.lock:
            return Counter(rcpt for rcpt, _ in self.accepted)

    def message_to(self, address: str) -> Any:
        """The one message a recipient received, parsed."""
        [data] = [data for rcpt, data in self.accepted if rcpt == address]
        return message_from_bytes(data, policy=policy.default)

    def _take(self, recipient: str, stage: str) -> str | None:
        """The action due for this recipient at this stage ("rcpt" or "data"), counting it."""
        rule = self.rules.get(recipient)
        if rule is None or (rule.action == "drop-after-data") != (stage == "data"):
            return None
        if rule.times is not None:
            if rule.times <= 0:
                return None
            rule.times -= 1
        return rule.action


class _Handler:
    def __init__(self, relay: Relay) -> None:
        self.relay = relay

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.relay.sessions.add(id(session))
        action = self.relay._take(address, "rcpt")
        if action is None:
            envelope.rcpt_tos.append(address)
            return "250 OK"
        if action == "drop":
            server.transport.abort()
            return "421 gone"
        self.relay.refusals[address] += 1
        if action.startswith("421"):
            asyncio.get_running_loop().call_soon(server.transport.close)
        return action

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        for rcpt in envelope.rcpt_tos:
            with self.relay.lock:
                self.relay.accepted.append((rcpt, envelope.original_content or envelope.content))
        lost = [r for r in envelope.rcpt_tos if self.relay._take(r, "data")]
        if lost:
            # The message is kept, but the sender never hears the 250.
            server.transport.abort()
        return "250 2.0.0 queued"


def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
    ok = (
        isinstance(data, LoginPassword)
        and data.login == USER.encode()
        and data.password == PASSWORD.encode()
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def relay() -> Iterator[Relay]:
    """A plain relay (no TLS, no AUTH) on 127.0.0.1 with programmable misbehaviour."""
    state = Relay("127.0.0.1", free_port())
    controller = Controller(_Handler(state), hostname=state.host, port=state.port)
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


@dataclass(frozen=True)
class Certificate:
    """A self-signed certificate for 127.0.0.1 and a client context that trusts only it."""

    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.cert))


@pytest.fixture(scope="session")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """Made with the openssl command (the `cryptography` package is not a dependency)."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
            "-addext", "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return Certificate(cert, key)


@pytest.fixture
def tls_relay(certificate: Certificate) -> Iterator[Relay]:
    """A relay that requires STARTTLS, then AUTH (user `digest`), like a submission port."""
    state = Relay("127.0.0.1", free_port())
    controller = Controller(
        _Handler(state),
        hostname=state.host,
        port=state.port,
        tls_context=certificate.server_context(),
        require_starttls=True,
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


@pytest.fixture
def implicit_tls_relay(certificate: Certificate) -> Iterator[Relay]:
    """A relay spoken to over TLS from the first byte (port 465 style), with AUTH."""
    state = Relay("127.0.0.1", free_port())
    controller = Controller(
        _Handler(state),
        hostname=state.host,
        port=state.port,
        ssl_context=certificate.server_context(),
        authenticator=_authenticate,
        auth_required=True,
        auth_require_tls=False,  # aiosmtpd does not see implicit TLS as TLS; it is TLS
    )
    controller.start()
    try:
        yield state
    finally:
        controller.stop()


SINK_SCRIPT = r"""
import asyncio, sys
from aiosmtpd.controller import Controller

class Sink:
    def __init__(self, out):
        self.out = out
    async def handle_DATA(self, server, session, envelope):
        for rcpt in envelope.rcpt_tos:
            self.out.write(rcpt + "\n")
        self.out.flush()
        return "250 OK"

port = int(sys.argv[1])
with open(sys.argv[2], "a", buffering=1) as out:
    controller = Controller(Sink(out), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()
"""


class SinkProcess:
    """An aiosmtpd relay in its own process that appends each recipient to a file (survives kills)."""

    def __init__(self, log: Path) -> None:
        self.port = free_port()
        self.log = log
        self.process = subprocess.Popen(
            [sys.executable, "-c", SINK_SCRIPT, str(self.port), str(log)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert self.process.stdout is not None
        assert self.process.stdout.readline().strip() == b"ready"

    def copies(self) -> Counter[str]:
        """How many messages each recipient received."""
        if not self.log.exists():
            return Counter()
        return Counter(line for line in self.log.read_text().splitlines() if line)

    def stop(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


@pytest.fixture
def sink(tmp_path: Path) -> Iterator[SinkProcess]:
    """A relay in another process, counting what each recipient got."""
    process = SinkProcess(tmp_path / "sink.log")
    try:
        yield process
    finally:
        process.stop()
