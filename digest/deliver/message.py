"""Build the email messages: an edition for one subscriber (multipart/alternative with the bulk-sender
headers Gmail and Yahoo require) and the double opt-in confirmation, as `Outgoing` (envelope + exact bytes).

Every header value passes `clean` (CR, LF and whitespace runs become one space) and is then parsed and folded
by the email package's SMTP policy, which refuses anything that could start a new header. Edition messages are
assembled from pre-folded pieces so that a send costs a few header folds and two base64 encodings: the headers
every message shares are folded once, the subject once per theme set, and both bodies are base64, so no body
line can ever look like a header or a MIME boundary.
"""

from __future__ import annotations

import base64
import secrets
from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, getaddresses, make_msgid
from typing import TYPE_CHECKING

from digest.config import Config
from digest.models import utcnow

if TYPE_CHECKING:
    from digest.render import RenderedEmail

POLICY = SMTP.clone(max_line_length=998)


def clean(value: str) -> str:
    """One line of header text whatever the input: no CR, LF or runs of whitespace."""
    return " ".join(value.split())


def folded(name: str, value: str) -> bytes:
    """One header line (with CRLF), parsed and folded by the SMTP policy; non-ASCII is RFC 2047 encoded."""
    _name, header = POLICY.header_store_parse(name, clean(value))
    return header.fold(policy=POLICY).encode("ascii")


@dataclass(frozen=True)
class Outgoing:
    """A message ready for the wire: who it is from and to (the envelope) and its exact bytes."""

    sender: str
    recipients: tuple[str, ...]
    message_id: str
    data: bytes


def outgoing(message: EmailMessage) -> Outgoing:
    """Serialise a message built with the email package, taking the envelope from its headers."""
    sender = getaddresses([message["From"]])[0][1]
    recipients = tuple(address for _name, address in getaddresses(message.get_all("To", [])))
    return Outgoing(sender, recipients, message["Message-ID"], message.as_bytes(policy=POLICY))


@dataclass(frozen=True)
class Unsubscribe:
    """Where a reader can leave: the RFC 8058 one-click https URL and, if configured, a mailto address."""

    one_click_url: str
    mailto: str = ""

    def header(self) -> str:
        links = [f"<{clean(self.one_click_url)}>"]
        if self.mailto:
            links.append(f"<mailto:{clean(self.mailto)}?subject=unsubscribe>")
        return ", ".join(links)


class EditionMail:
    """Builds each subscriber's edition message for one config."""

    def __init__(self, config: Config) -> None:
        self.boundary = f"=_digest_{secrets.token_hex(16)}"
        shared = [("From", config.email.from_address), ("List-Id", f"{clean(config.digest.title)} <{config.email.list_id}>"),
                  ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"), ("MIME-Version", "1.0"),
                  ("Content-Type", f'multipart/alternative; boundary="{self.boundary}"')]
        if config.email.reply_to:
            shared.insert(1, ("Reply-To", config.email.reply_to))
        self.shared_headers = b"".join(folded(name, value) for name, value in shared)
        self.sender = getaddresses([clean(config.email.from_address)])[0][1]
        self.subjects: dict[str, bytes] = {}
        self.date = (0, b"")

    def build(self, rendered: RenderedEmail, to: str, message_id: str, unsubscribe: Unsubscribe) -> Outgoing:
        headers = (self.subject(rendered.subject) + self.date_header() + folded("To", to)
                   + folded("Message-ID", message_id) + folded("List-Unsubscribe", unsubscribe.header()))
        body = self.part("text/plain", rendered.text) + self.part("text/html", rendered.html)
        data = headers + self.shared_headers + b"\r\n" + body + f"--{self.boundary}--\r\n".encode()
        return Outgoing(self.sender, (to,), message_id, data)

    def subject(self, subject: str) -> bytes:
        if subject not in self.subjects:
            self.subjects[subject] = folded("Subject", subject)
        return self.subjects[subject]

    def date_header(self) -> bytes:
        """The Date header, folded at most once per second."""
        now = utcnow().replace(microsecond=0)
        if self.date[0] != now:
            self.date = (now, folded("Date", format_datetime(now)))
        return self.date[1]

    def part(self, content_type: str, text: str) -> bytes:
        encoded = base64.encodebytes(text.encode("utf-8")).replace(b"\n", b"\r\n")
        return (f'--{self.boundary}\r\nContent-Type: {content_type}; charset="utf-8"\r\n'
                f"Content-Transfer-Encoding: base64\r\n\r\n").encode() + encoded


def confirmation_message(config: Config, to: str, confirm_url: str) -> Outgoing:
    """The double opt-in email: one link that confirms the subscription."""
    title = clean(config.digest.title)
    hours = config.web.confirm_max_age_hours
    message = EmailMessage(policy=POLICY)
    message["From"] = clean(config.email.from_address)
    message["To"] = clean(to)
    if config.email.reply_to:
        message["Reply-To"] = clean(config.email.reply_to)
    message["Subject"] = f"Confirm your subscription to {title}"
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=clean(config.email.list_id))
    message.set_content(
        f"Someone (hopefully you) asked to receive {title} at this address.\n\n"
        f"Confirm within {hours:g} hours by opening this link:\n{confirm_url}\n\n"
        "If it was not you, ignore this email: nothing will be sent without confirmation.\n"
    )
    return outgoing(message)
