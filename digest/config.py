"""Typed configuration: finds `config.toml`, validates it once, and applies environment overrides.

Lookup order: `--config PATH`, then `$DIGEST_CONFIG`, then `./config.toml`. `$DIGEST_DATABASE_URL`
overrides `[database] url`. Every error names the file and the offending key.
"""

from __future__ import annotations

import os
import tomllib
import datetime as dt
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from digest.errors import ConfigError

DEFAULT_CONFIG_NAME = "config.toml"


class Section(BaseModel):
    """A config table: unknown keys are errors, so typos never pass silently."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class DigestSettings(Section):
    title: str = "Research digest"
    timezone: str = "UTC"
    base_url: str = "http://localhost:8000"
    templates_dir: Path | None = None
    output_dir: Path = Path("digest-output")
    postal_address: str = ""
    contact_email: str = ""

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown timezone {value!r}") from exc
        return value


class DatabaseSettings(Section):
    url: str = "sqlite:///digest.db"
    echo: bool = False


class IngestSettings(Section):
    timeout_seconds: float = Field(20.0, gt=0)
    retries: int = Field(3, ge=0)
    backoff_seconds: float = Field(1.0, ge=0)
    max_bytes: int = Field(20_000_000, gt=0)
    arxiv_api_interval_seconds: float = Field(3.0, ge=0)


SourceKind = Literal["arxiv-rss", "arxiv-api", "hf-daily", "feed"]
AnnounceType = Literal["new", "cross", "replace", "replace-cross"]


class SourceSettings(Section):
    name: str = Field(min_length=1)
    kind: SourceKind
    url: str = Field(min_length=1)
    enabled: bool = True
    categories: list[str] = []
    include: list[str] = []
    exclude: list[str] = []
    announce_types: list[AnnounceType] = []
    # arxiv-api only: a search query (arXiv syntax) and how many days back to ask for.
    query: str = ""
    days: int = Field(2, ge=1)
    page_size: int = Field(100, ge=1, le=2000)
    max_results: int = Field(500, ge=1)
    # hf-daily only: which day to ask for; `None` means today in `[digest] timezone`.
    date: dt.date | None = None


class ThemeSettings(Section):
    name: str = Field(min_length=1)
    description: str = ""
    keywords: list[str] = []
    exclude: list[str] = []
    categories: list[str] = []
    max_papers: int = Field(10, ge=1)


class AssignSettings(Section):
    similarity: bool = True
    other_bucket: bool = True
    other_name: str = "Other"
    min_similarity: float = Field(0.35, ge=-1, le=1)
    similarity_margin: float = Field(0.1, ge=0, le=2)
    keyword_weight: float = Field(0.5, ge=0)
    similarity_weight: float = Field(1.0, ge=0)


class RankingSettings(Section):
    relevance: float = Field(1.0, ge=0)
    popularity: float = Field(0.3, ge=0)
    recency: float = Field(0.2, ge=0)


class SummariserSettings(Section):
    backend: str = "transformers"
    model: str = "smollm2"
    gguf_file: str | None = None
    device: str = "cpu"
    dtype: str = "auto"
    batch_size: int | None = Field(None, ge=1)  # None: the backend's default for its device
    max_tldr_words: int = Field(30, ge=5)
    prefer_specific: bool = True
    max_new_tokens: int = Field(60, ge=8)
    cache_dir: Path | None = None
    # openai backend only
    base_url: str = "http://127.0.0.1:8080/v1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_seconds: float = Field(60.0, gt=0)
    concurrency: int = Field(8, ge=1, le=512)
    claim_lease_seconds: float = Field(1800.0, gt=0)


class EditionSettings(Section):
    include_replacements: bool = False
    allow_repeats: bool = False
    weekly_day: Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"] = "mon"
    max_html_bytes: int = Field(100_000, gt=10_000)


class EmailSettings(Section):
    transport: str = "file"
    host: str = "localhost"
    port: int = Field(587, ge=1, le=65535)
    security: Literal["starttls", "tls", "none"] = "starttls"
    username: str = ""
    password_env: str = "DIGEST_SMTP_PASSWORD"
    from_address: str = Field("Research digest <digest@example.org>", alias="from")
    reply_to: str = ""
    list_id: str = "digest.example.org"
    unsubscribe_mailto: str = ""
    outbox_dir: Path = Path("outbox")
    timeout_seconds: float = Field(30.0, gt=0)
    rate_per_second: float = Field(10.0, gt=0)
    rate_per_hour: int = Field(10_000, ge=1)
    max_attempts: int = Field(5, ge=1)
    bounce_after: int = Field(3, ge=1)
    send_by_hours: float = Field(48.0, gt=0)
    # CA bundle (PEM) trusted for the server's certificate, beside the system ones; None = system only.
    ca_file: Path | None = None
    # Base delay before retrying a temporary failure; doubles with each attempt.
    retry_backoff_seconds: float = Field(60.0, ge=0)
    # A row claimed longer ago than this by a sender that never finished is taken over by another sender.
    claim_lease_seconds: float = Field(900.0, gt=0)
    # Rows claimed per transaction; each is still marked sent in its own commit right after the reply.
    claim_batch: int = Field(20, ge=1, le=1000)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class WebSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(8000, ge=1, le=65535)
    secret_env: str = "DIGEST_SECRET"
    confirm_max_age_hours: float = Field(72.0, gt=0)
    subscribe_limit_per_hour: int = Field(5, ge=1)


class ScheduleSettings(Section):
    ingest: str = "0 */4 * * *"
    daily: str = "0 7 * * *"
    weekly: str = "0 8 * * mon"
    # How often the daemon also checks the database for anything due and not done (after a suspend, a failed
    # job's retry, messages whose retry time came); also APScheduler's misfire_grace_time.
    check_minutes: float = Field(5.0, gt=0)
    # The scheduler lease: a standby takes over at most this long after the active daemon stopped renewing.
    lease_seconds: float = Field(60.0, gt=0)
    heartbeat_seconds: float = Field(10.0, gt=0)
    # How long SIGTERM/SIGINT waits for the running job to reach its next safe point.
    stop_timeout_seconds: float = Field(10.0, ge=0)
    # A source failing this many fetches in a row is fetched less often: after `source_backoff_hours`, then
    # twice that after each further failure, at most `source_backoff_max_hours`.
    source_backoff_after: int = Field(3, ge=1)
    source_backoff_hours: float = Field(4.0, gt=0)
    source_backoff_max_hours: float = Field(24.0, gt=0)

    @model_validator(mode="after")
    def _heartbeat_fits_the_lease(self) -> ScheduleSettings:
        if self.heartbeat_seconds * 3 > self.lease_seconds:
            raise ValueError(
                f"heartbeat_seconds ({self.heartbeat_seconds:g}) must be at most a third of lease_seconds "
                f"({self.lease_seconds:g}), so a missed heartbeat does not lose the lease"
            )
        return self


class Config(Section):
    digest: DigestSettings = DigestSettings()
    database: DatabaseSettings = DatabaseSettings()
    ingest: IngestSettings = IngestSettings()
    sources: list[SourceSettings] = []
    themes: list[ThemeSettings] = []
    assign: AssignSettings = AssignSettings()
    ranking: RankingSettings = RankingSettings()
    summariser: SummariserSettings = SummariserSettings()
    edition: EditionSettings = EditionSettings()
    email: EmailSettings = EmailSettings()
    web: WebSettings = WebSettings()
    schedule: ScheduleSettings = ScheduleSettings()
    # Where the file was read from; relative paths in it resolve against this folder.
    path: Path | None = Field(None, exclude=True)

    @model_validator(mode="after")
    def _unique_names(self) -> Config:
        for label, items in (("sources", self.sources), ("themes", self.themes)):
            names = [item.name for item in items]
            duplicates = sorted({name for name in names if names.count(name) > 1})
            if duplicates:
                raise ValueError(f"duplicate {label} name(s): {', '.join(duplicates)}")
        return self

    @property
    def base_dir(self) -> Path:
        return self.path.parent if self.path else Path.cwd()

    def resolve(self, path: Path) -> Path:
        """A path from the config, made absolute against the config file's folder."""
        return path if path.is_absolute() else self.base_dir / path

    @property
    def database_url(self) -> str:
        url = os.environ.get("DIGEST_DATABASE_URL") or self.database.url
        prefix = "sqlite:///"
        if url.startswith(prefix) and not url.startswith(prefix + "/") and url != prefix + ":memory:":
            url = prefix + str(self.resolve(Path(url[len(prefix):])))
        return url

    @property
    def theme_names(self) -> list[str]:
        """Every theme a paper can land in, in the order editions show them: the configured ones, then the
        Other bucket when it is on."""
        names = [theme.name for theme in self.themes]
        return names + [self.assign.other_name] if self.assign.other_bucket else names

    @property
    def timezone(self) -> ZoneInfo:
        return ZoneInfo(self.digest.timezone)

    def source(self, name: str) -> SourceSettings:
        for source in self.sources:
            if source.name == name:
                return source
        known = ", ".join(s.name for s in self.sources) or "none"
        raise ConfigError(f"no source named {name!r} in {self.path} (known: {known})")


def find_config_path(explicit: Path | None = None) -> Path:
    """The config file to use: `--config`, then `$DIGEST_CONFIG`, then `./config.toml`."""
    if explicit is not None:
        return explicit
    if env := os.environ.get("DIGEST_CONFIG"):
        return Path(env)
    return Path.cwd() / DEFAULT_CONFIG_NAME


def load_config(path: Path | None = None) -> Config:
    """Read and validate the config file; raise ConfigError naming the file and key on any problem."""
    path = find_config_path(path).resolve()
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (run `digest init` to write one)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    return parse_config(raw, path)


def parse_config(raw: dict, path: Path | None = None) -> Config:
    try:
        return Config.model_validate({**raw, "path": path})
    except ValidationError as exc:
        raise ConfigError(f"{path or '<config>'}: " + describe_validation_error(exc, raw)) from None


def describe_validation_error(exc: ValidationError, raw: dict) -> str:
    problems = []
    for error in exc.errors():
        key = format_key(error["loc"], raw)
        if error["type"] == "extra_forbidden":
            problems.append(f"unknown key {key!r}")
        elif error["type"] == "missing":
            problems.append(f"missing required key {key!r}")
        else:
            problems.append(f"key {key!r}: {error['msg']} (got {error.get('input')!r})")
    return "; ".join(problems)


def format_key(loc: tuple, raw: dict) -> str:
    """Turn pydantic's location tuple into a TOML-like key, naming array items: `sources[2] (arxiv).kind`."""
    parts: list[str] = []
    node = raw
    for item in loc:
        if isinstance(item, int):
            name = node[item].get("name") if isinstance(node, list) and item < len(node) and isinstance(node[item], dict) else None
            parts[-1] += f"[{item}]" + (f" ({name})" if name else "")
            node = node[item] if isinstance(node, list) and item < len(node) else None
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts) or "<root>"
