"""The project's error types: one root, caught once per entry point (CLI command, scheduled job, web request)."""


class DigestError(Exception):
    """Base for every error digest raises on purpose; its message is meant for the user."""


class ConfigError(DigestError):
    """The configuration file is missing, unreadable or invalid."""


class StoreError(DigestError):
    """The database cannot be opened or is not at the expected schema."""


class FeedError(DigestError):
    """A source could not be fetched or parsed."""


class SummariserError(DigestError):
    """A summariser backend could not be loaded or failed to answer."""


class RenderError(DigestError):
    """A template or an MJML document could not be rendered."""


class SubscriberError(DigestError):
    """A subscriber cannot be added, found or changed as asked (bad address, unknown theme, bad CSV row)."""


class DeliveryError(DigestError):
    """Mail cannot be sent as asked (no such edition) or the run must stop (bad login, TLS failure)."""
