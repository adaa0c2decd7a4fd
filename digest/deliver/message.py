"""Build the email messages: an edition for one subscriber (multipart/alternative with the bulk-sender
headers Gmail and Yahoo require) and the double opt-in confirmation.

Every header value goes through `clean`, which folds CR, LF and other whitespace runs into one space, and the
email package's SMTP policy refuses anything else that could start a new header.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from typing import TYPE_CHECKING

from digest.config import Config
from digest.models import utcnow

if TYPE_CHECKING:
    from digest.render import RenderedEmail

POLICY = SMTP.clone(max_line_length=998)


def clean(value: str) -> str:
    """One line of header text whatever the input: no CR, LF or runs of whitespace."""
    return " ".join(value.split())


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


def base_message(config: Config, to: str, subject: str, message_id: str) -> EmailMessage:
    message = EmailMessage(policy=POLICY)
    message["From"] = clean(config.email.from_address)
    message["To"] = clean(to)
    if config.email.reply_to:
        message["Reply-To"] = clean(config.email.reply_to)
    message["Subject"] = clean(subject)
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = clean(message_id)
    return message


def edition_message(config: Config, rendered: RenderedEmail, to: str, message_id: str,
                    unsubscribe: Unsubscribe) -> EmailMessage:
    """The edition as sent to one subscriber: text and HTML alternatives plus List-* headers."""
    message = base_message(config, to, rendered.subject, message_id)
    message["List-Id"] = f"{clean(config.digest.title)} <{clean(config.email.list_id)}>"
    message["List-Unsubscribe"] = unsubscribe.header()
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(rendered.text)
    message.add_alternative(rendered.html, subtype="html")
    return message


def confirmation_message(config: Config, to: str, confirm_url: str) -> EmailMessage:
    """The double opt-in email: one link that confirms the subscription."""
    title = clean(config.digest.title)
    hours = config.web.confirm_max_age_hours
    message = base_message(config, to, f"Confirm your subscription to {title}",
                           make_msgid(domain=clean(config.email.list_id)))
    message.set_content(
        f"Someone (hopefully you) asked to receive {title} at this address.\n\n"
        f"Confirm within {hours:g} hours by opening this link:\n{confirm_url}\n\n"
        "If it was not you, ignore this email: nothing will be sent without confirmation.\n"
    )
    return message
