"""Fetching: the only place that reads a source's bytes, over HTTP(S) or from a local file.

HTTP goes through one httpx client with timeouts, the project's User-Agent, redirects followed, conditional GET
(ETag / Last-Modified; a 304 comes back as `not_modified` with no body), retries with exponential backoff on
timeouts, connection errors, 429 and 5xx (honouring a reasonable Retry-After), and a byte cap enforced while
streaming. `file://` URLs and plain paths are read from disk under the same cap.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

import httpx

from digest import USER_AGENT
from digest.config import IngestSettings
from digest.errors import FeedError

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER_SECONDS = 120.0


@dataclass(frozen=True)
class Validators:
    """The ETag and Last-Modified saved from the last successful fetch, sent back for a conditional GET."""

    etag: str | None = None
    last_modified: str | None = None


@dataclass(frozen=True)
class Fetched:
    """A response: its body (empty when not modified), HTTP status (None for local files) and validators."""

    content: bytes
    http_status: int | None = None
    etag: str | None = None
    last_modified: str | None = None
    not_modified: bool = False

    @property
    def is_local(self) -> bool:
        return self.http_status is None


class RetryableError(Exception):
    """A failure worth another attempt; `wait` is what the server asked for (Retry-After), if anything."""

    def __init__(self, reason: str, wait: float | None = None):
        super().__init__(reason)
        self.wait = wait


class Fetcher:
    """Reads URLs and local paths with the limits of `[ingest]`. Relative paths resolve against `base_dir`."""

    def __init__(self, settings: IngestSettings, base_dir: Path | None = None):
        self.settings = settings
        self.base_dir = base_dir or Path.cwd()
        self.last_request: dict[str, float] = {}
        self.client = httpx.Client(
            timeout=settings.timeout_seconds,
            follow_redirects=True,
            headers={"User-Agent": USER_AGENT},
        )

    def __enter__(self) -> Fetcher:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()

    def close(self) -> None:
        self.client.close()

    def fetch(self, url: str, validators: Validators = Validators(), params: dict | None = None) -> Fetched:
        """The bytes at `url`; raises FeedError naming the URL and the reason when it cannot be had."""
        path = local_path(url, self.base_dir)
        if path is not None:
            return Fetched(content=self.read_file(path))
        attempt = 0
        while True:
            try:
                return self.get_once(url, validators, params)
            except RetryableError as exc:
                attempt += 1
                if attempt > self.settings.retries:
                    raise FeedError(f"{url}: {exc} (gave up after {attempt} attempts)") from None
                time.sleep(exc.wait if exc.wait is not None else self.settings.backoff_seconds * 2 ** (attempt - 1))

    def is_local(self, url: str) -> bool:
        return local_path(url, self.base_dir) is not None

    def pace(self, service: str, interval: float) -> None:
        """Wait until `interval` seconds have passed since the last request to `service` (a polite API client)."""
        if (last := self.last_request.get(service)) is not None:
            time.sleep(max(0.0, last + interval - time.monotonic()))
        self.last_request[service] = time.monotonic()

    def read_file(self, path: Path) -> bytes:
        try:
            size = path.stat().st_size
            if size > self.settings.max_bytes:
                raise FeedError(f"{path}: file is {size} bytes, over the {self.settings.max_bytes}-byte limit")
            return path.read_bytes()
        except OSError as exc:
            raise FeedError(f"{path}: cannot read file: {exc.strerror or exc}") from None

    def get_once(self, url: str, validators: Validators, params: dict | None) -> Fetched:
        try:
            with self.client.stream("GET", url, params=params, headers=conditional_headers(validators)) as response:
                return self.read_response(url, response, validators)
        except httpx.TimeoutException:
            raise RetryableError(f"timed out after {self.settings.timeout_seconds:g} s") from None
        except httpx.TooManyRedirects:
            raise FeedError(f"{url}: too many redirects") from None
        except httpx.TransportError as exc:
            raise RetryableError(f"cannot connect: {exc or type(exc).__name__}") from None
        except httpx.InvalidURL as exc:
            raise FeedError(f"{url}: invalid URL: {exc}") from None

    def read_response(self, url: str, response: httpx.Response, validators: Validators) -> Fetched:
        status = response.status_code
        if status in RETRY_STATUSES:
            raise RetryableError(f"HTTP {status} {response.reason_phrase}", retry_after(response))
        if status == 304:
            etag = response.headers.get("ETag") or validators.etag
            last_modified = response.headers.get("Last-Modified") or validators.last_modified
            return Fetched(b"", status, etag, last_modified, not_modified=True)
        if status >= 400:
            raise FeedError(f"{url}: HTTP {status} {response.reason_phrase}")
        return Fetched(
            content=self.read_capped(url, response),
            http_status=status,
            etag=response.headers.get("ETag"),
            last_modified=response.headers.get("Last-Modified"),
        )

    def read_capped(self, url: str, response: httpx.Response) -> bytes:
        """The body, stopping as soon as it passes `max_bytes` (a lying or missing Content-Length is no help)."""
        limit = self.settings.max_bytes
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > limit:
            raise FeedError(f"{url}: response is {declared} bytes, over the {limit}-byte limit")
        chunks, size = [], 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > limit:
                raise FeedError(f"{url}: response is over the {limit}-byte limit")
            chunks.append(chunk)
        return b"".join(chunks)


def local_path(url: str, base_dir: Path) -> Path | None:
    """The file a `file://` URL or plain path points at, or None for a network URL."""
    parsed = urlparse(url)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    path = Path(url).expanduser()
    return path if path.is_absolute() else base_dir / path


def conditional_headers(validators: Validators) -> dict[str, str]:
    headers = {}
    if validators.etag:
        headers["If-None-Match"] = validators.etag
    if validators.last_modified:
        headers["If-Modified-Since"] = validators.last_modified
    return headers


def retry_after(response: httpx.Response) -> float | None:
    """Seconds the server asked us to wait (delta or HTTP date), capped at two minutes; None if it did not say."""
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - time.time()
        except (TypeError, ValueError):
            return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
