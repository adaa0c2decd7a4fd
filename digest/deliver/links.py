"""Signed links in emails and on the web page: confirm (expires), preferences and unsubscribe (no expiry).

Each token carries the subscriber's id and address, signed with the secret in the environment variable
`[web] secret_env` and a salt per purpose, so a link for one purpose never works for another and a link stops
working once the address changes.
"""

from __future__ import annotations

import os
from urllib.parse import urlencode

from itsdangerous import BadSignature, SignatureExpired, URLSafeSerializer, URLSafeTimedSerializer

from digest.config import Config
from digest.errors import ConfigError

CONFIRM, PREFERENCES, UNSUBSCRIBE = "confirm", "preferences", "unsubscribe"


def secret(config: Config) -> str:
    variable = config.web.secret_env
    value = os.environ.get(variable, "")
    if not value:
        raise ConfigError(
            f"${variable} is not set: it holds the secret that signs subscription links ([web] secret_env in "
            f"{config.path}); set it to a long random string, e.g. `export {variable}=$(openssl rand -hex 32)`"
        )
    return value


class Links:
    """Makes and checks the signed tokens and the absolute URLs built from `[digest] base_url`."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.base_url = config.digest.base_url.rstrip("/")
        key = secret(config)
        self.timed = URLSafeTimedSerializer(key, salt=CONFIRM)
        self.lasting = {purpose: URLSafeSerializer(key, salt=purpose) for purpose in (PREFERENCES, UNSUBSCRIBE)}

    def token(self, purpose: str, subscriber_id: int, email: str) -> str:
        payload = [subscriber_id, email]
        return self.timed.dumps(payload) if purpose == CONFIRM else self.lasting[purpose].dumps(payload)

    def read(self, purpose: str, token: str) -> tuple[int, str] | None:
        """(subscriber id, email) from a valid token for this purpose; None if forged, altered or expired."""
        try:
            if purpose == CONFIRM:
                max_age = self.config.web.confirm_max_age_hours * 3600
                subscriber_id, email = self.timed.loads(token, max_age=max_age)
            else:
                subscriber_id, email = self.lasting[purpose].loads(token)
        except (SignatureExpired, BadSignature, ValueError, TypeError):
            return None
        return int(subscriber_id), str(email)

    def url(self, path: str, **query: str) -> str:
        return f"{self.base_url}{path}" + (f"?{urlencode(query)}" if query else "")

    def confirm_url(self, subscriber_id: int, email: str) -> str:
        return self.url("/confirm", token=self.token(CONFIRM, subscriber_id, email))

    def preferences_url(self, subscriber_id: int, email: str) -> str:
        return self.url("/preferences", token=self.token(PREFERENCES, subscriber_id, email))

    def unsubscribe_url(self, subscriber_id: int, email: str) -> str:
        """The page with an unsubscribe button (a GET here never unsubscribes by itself)."""
        return self.url("/unsubscribe", token=self.token(UNSUBSCRIBE, subscriber_id, email))

    def one_click_url(self, subscriber_id: int, email: str) -> str:
        """The RFC 8058 target of `List-Unsubscribe`: a POST here unsubscribes at once."""
        return self.url("/unsubscribe/one-click", token=self.token(UNSUBSCRIBE, subscriber_id, email))
