"""A real SMTP server on loopback for tests and benches (aiosmtpd): records what it accepts and can be told to
refuse, defer, drop or slow down chosen recipients. Variants: plain, STARTTLS, implicit TLS, with AUTH.

    with SmtpServer(tls="starttls", login=("user", "pw"), certs=tmp_path) as server:
        ...  # server.port, server.ca_file, server.messages, server.handler.script(...)
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
import threading
from collections import defaultdict, deque
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return probe.getsockname()[1]


def make_certificate(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (openssl CLI); returns (cert, key) paths."""
    cert, key = folder / "smtp-cert.pem", folder / "smtp-key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
         "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=localhost",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
        check=True, capture_output=True,
    )
    return cert, key


@dataclass
class Received:
    """One accepted message."""

    sender: str
    recipients: list[str]
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.raw, policy=policy.default)


class RecordingHandler:
    """Accepts mail and records it, except for recipients given scripted replies:
    `script(address, "451 later", "drop")` answers the next deliveries to that address with those replies in turn
    (`drop` closes the connection without a reply); `refuse(address, "550 no such user")` answers every RCPT
    for it. `delay_seconds` slows every DATA (to catch a sender mid-run); `wait_for_clients = n` holds every DATA
    until n different connections have sent a recipient (so concurrent senders really overlap)."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.scripts: dict[str, deque[str]] = defaultdict(deque)
        self.refusals: dict[str, str] = {}
        self.delay_seconds = 0.0
        self.wait_for_clients = 0
        self.clients: set = set()
        self.lock = threading.Lock()

    def script(self, address: str, *replies: str) -> None:
        self.scripts[address].extend(replies)

    def refuse(self, address: str, reply: str) -> None:
        self.refusals[address] = reply

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refusals:
            return self.refusals[address]
        envelope.rcpt_tos.append(address)
        self.clients.add(session.peer)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        for _ in range(3000):
            if len(self.clients) >= self.wait_for_clients:
                break
            await asyncio.sleep(0.01)
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)
        for address in envelope.rcpt_tos:
            if self.scripts.get(address):
                reply = self.scripts[address].popleft()
                if reply == "drop":
                    server.transport.abort()
                    return "421 dropped"
                return reply
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
        return "250 2.0.0 Ok: queued"


class SmtpServer:
    """aiosmtpd on 127.0.0.1 and a free port, in a background thread. `tls`: None, "starttls" or "implicit";
    `login`: (user, password) to require AUTH. `certs`: folder for the self-signed certificate."""

    def __init__(self, tls: str | None = None, login: tuple[str, str] | None = None, certs: Path | None = None):
        self.handler = RecordingHandler()
        self.port = free_port()
        self.login = login
        self.ca_file: Path | None = None
        kwargs: dict = {}
        if tls:
            cert, key = make_certificate(certs)
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(cert, key)
            self.ca_file = cert
            kwargs = {"ssl_context": context} if tls == "implicit" else {"tls_context": context,
                                                                           "require_starttls": True}
        if login:
            kwargs |= {"authenticator": self.authenticate, "auth_required": True, "auth_require_tls": tls == "starttls"}
        self.controller = Controller(self.handler, hostname=HOST, port=self.port, **kwargs)

    def authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login.decode(), auth_data.password.decode()) == self.login
        return AuthResult(success=ok, handled=False)

    @property
    def messages(self) -> list[Received]:
        with self.handler.lock:
            return list(self.handler.received)

    def __enter__(self) -> SmtpServer:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()
