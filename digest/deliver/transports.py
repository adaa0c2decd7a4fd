"""Mail transports, found by name through the `digest.transports` entry-point group (see `digest.plugins`):
`smtp` (STARTTLS, implicit TLS or plain, login, connection reuse) and `file` (one .eml file per message, for
the demo and trying things out).

`Transport.send` takes an `Outgoing` (envelope and bytes) and returns the server's reply. It raises `TemporaryFailure` (4xx, dropped connection: retry
later) or `PermanentFailure` (5xx for this address) for one message, and DeliveryError when the whole run
must stop (login refused, TLS failure, server unreachable).
"""

from __future__ import annotations

import os
import smtplib
import ssl

from digest.config import Config
from digest.deliver.message import Outgoing
from digest.errors import ConfigError, DeliveryError
from digest.plugins import Registry


class SendFailure(Exception):
    """One message was not accepted; the reply says why."""


class TemporaryFailure(SendFailure):
    """Try this message again later: a 4xx reply or a dropped connection."""


class PermanentFailure(SendFailure):
    """The server refused this message for good (a 5xx reply)."""


class Transport:
    """Sends one message at a time; may keep a connection open between messages until `close`."""

    def __init__(self, config: Config) -> None:
        self.config = config

    def send(self, message: Outgoing) -> str:
        raise NotImplementedError

    def close(self) -> None:
        """Release any connection; safe to call more than once."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


TRANSPORTS: Registry[Transport] = Registry("digest.transports")


def get_transport(config: Config) -> Transport:
    """The transport `[email] transport` names."""
    transport = TRANSPORTS.get(config.email.transport)
    if transport is None:
        known = ", ".join(TRANSPORTS.names())
        raise ConfigError(f"{config.path}: unknown [email] transport {config.email.transport!r} (known: {known})")
    return transport(config)


class FileTransport(Transport):
    """Writes each message to `[email] outbox_dir` as `<message id>.eml`."""

    def send(self, message: Outgoing) -> str:
        folder = self.config.resolve(self.config.email.outbox_dir)
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / (safe_file_name(message.message_id) + ".eml")
        path.write_bytes(message.data)
        return f"written {path}"


def safe_file_name(message_id: str) -> str:
    return "".join(char if char.isalnum() or char in ".-_@" else "_" for char in message_id.strip("<>"))


class SmtpTransport(Transport):
    """SMTP with one connection reused across messages and reopened after a drop or a 421."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.connection: smtplib.SMTP | None = None

    def send(self, message: Outgoing) -> str:
        connection = self.connection or self.connect()
        try:
            return self.transact(connection, message.sender, message.recipients, message.data)
        except smtplib.SMTPResponseException as exc:  # DATA refused before the body was sent
            self.fail(connection, exc.smtp_code, exc.smtp_error, "DATA")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            self.drop()
            raise TemporaryFailure(f"connection lost: {exc}") from None

    def transact(self, connection: smtplib.SMTP, sender: str, recipients: tuple[str, ...], data: bytes) -> str:
        """MAIL, RCPT, DATA on an open connection; the reply to DATA is the server's receipt."""
        for command, argument in [("mail", sender), *(("rcpt", rcpt) for rcpt in recipients)]:
            code, reply = getattr(connection, command)(argument)
            if code >= 300:
                self.fail(connection, code, reply, f"{command.upper()} {argument}")
        code, reply = connection.data(data)
        if code >= 300:
            self.fail(connection, code, reply, "DATA")
        return f"{code} {reply.decode(errors='replace')}"

    def fail(self, connection: smtplib.SMTP, code: int, reply: bytes, stage: str) -> None:
        text = f"{code} {reply.decode(errors='replace')} (after {stage})"
        if code == 421:
            self.drop()
        else:
            try:
                connection.rset()
            except (smtplib.SMTPException, OSError):
                self.drop()
        raise (PermanentFailure if code >= 500 else TemporaryFailure)(text)

    def connect(self) -> smtplib.SMTP:
        settings = self.config.email
        where = f"SMTP server {settings.host}:{settings.port}"
        try:
            self.connection = self.open(self.tls_context())
            if settings.username:
                self.connection.login(settings.username, self.password())
        except smtplib.SMTPAuthenticationError as exc:
            self.drop()
            raise DeliveryError(f"{where} refused the login for {settings.username!r}: {exc.smtp_code} "
                                f"{exc.smtp_error.decode(errors='replace')}") from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            self.drop()
            raise DeliveryError(f"TLS with {where} failed: {exc}") from None
        except (smtplib.SMTPException, OSError) as exc:
            self.drop()
            raise DeliveryError(f"cannot connect to {where}: {exc}") from None
        return self.connection

    def open(self, context: ssl.SSLContext) -> smtplib.SMTP:
        settings = self.config.email
        timeout = settings.timeout_seconds
        if settings.security == "tls":
            return smtplib.SMTP_SSL(settings.host, settings.port, timeout=timeout, context=context)
        connection = smtplib.SMTP(settings.host, settings.port, timeout=timeout)
        if settings.security == "starttls":
            connection.ehlo()
            if not connection.has_extn("starttls"):
                connection.close()
                raise ssl.SSLError("the server does not offer STARTTLS (set [email] security)")
            connection.starttls(context=context)
        connection.ehlo()
        return connection

    def tls_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        if self.config.email.ca_file is not None:
            context.load_verify_locations(self.config.resolve(self.config.email.ca_file))
        return context

    def password(self) -> str:
        variable = self.config.email.password_env
        password = os.environ.get(variable)
        if password is None:
            raise DeliveryError(f"[email] username is set but ${variable} (password_env) is not")
        return password

    def drop(self) -> None:
        connection, self.connection = self.connection, None
        if connection is not None:
            try:
                connection.close()
            except OSError:
                pass

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.quit()
            except (smtplib.SMTPException, OSError):
                pass
        self.drop()
