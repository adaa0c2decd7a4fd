"""Delivery: mail transports (`smtp`, `file`), building each message, signed links, and the outbox send loop."""

from digest.config import Config


def theme_choices(config: Config) -> list[str]:
    """The themes a subscriber can pick: the configured ones, plus the Other bucket when it is on."""
    names = [theme.name for theme in config.themes]
    return names + [config.assign.other_name] if config.assign.other_bucket else names
