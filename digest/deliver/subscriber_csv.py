"""Subscribers as CSV: the format `digest subscribers import` reads and `export` writes.

An import is all or nothing: every row is checked first (address, status, themes, frequency, repeats, addresses
already subscribed), and one bad row means nothing is added and every bad row is named by its line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from digest.errors import SubscriberError
from digest.models import Subscriber, utcnow
from digest.store import subscribers as store

CSV_FIELDS = ("email", "status", "themes", "frequency", "timezone", "origin", "created_at")


def read_csv(path: Path, known_themes: Iterable[str]) -> list[CsvRow]:
    """The checked rows of a subscriber CSV file (see `parse_csv`)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise SubscriberError(f"line {line}: not UTF-8 text (save the file as UTF-8)") from None
    return parse_csv(text, known_themes)


@dataclass(frozen=True)
class CsvRow:
    """One valid row of an import, with the line it came from (for messages)."""

    line: int
    email: str
    status: str
    themes: list[str]
    frequency: str


def parse_csv(text: str, known_themes: Iterable[str]) -> list[CsvRow]:
    """Validate every row of a subscriber CSV (column `email` required; `status`, `themes` split on `;`,
    `frequency` optional). SubscriberError listing every bad row with its line number if any is bad."""
    reader = csv.DictReader(io.StringIO(text))
    if not reader.fieldnames or "email" not in [name.strip() for name in reader.fieldnames]:
        raise SubscriberError("the CSV needs a header row with an `email` column")
    rows, problems, seen = [], [], {}
    for record in reader:
        line = reader.line_num
        try:
            row = parse_csv_row(line, {key.strip(): (value or "") for key, value in record.items() if key}, known_themes)
        except SubscriberError as exc:
            problems.append(f"line {line}: {exc}")
            continue
        if row.email in seen:
            problems.append(f"line {line}: {row.email} repeats line {seen[row.email]}")
        seen.setdefault(row.email, line)
        rows.append(row)
    if problems:
        raise SubscriberError(f"{len(problems)} bad row(s), nothing imported:\n" + "\n".join(problems))
    return rows


def parse_csv_row(line: int, record: dict[str, str], known_themes: Iterable[str]) -> CsvRow:
    status = record.get("status", "").strip() or "confirmed"
    if status not in ("pending", "confirmed"):
        raise SubscriberError(f"status {status!r} cannot be imported (use pending or confirmed)")
    frequency = record.get("frequency", "").strip() or "daily"
    themes = store.check_choices(record.get("themes", "").split(";"), frequency, known_themes)
    return CsvRow(line, store.normalise_email(record.get("email", "")), status, themes, frequency)


def import_rows(session: Session, rows: list[CsvRow]) -> int:
    """Add the checked rows; SubscriberError listing every address already present (and nothing added)."""
    existing = store.existing_emails(session, [row.email for row in rows])
    if existing:
        problems = [f"line {row.line}: {row.email} is already a subscriber" for row in rows if row.email in existing]
        raise SubscriberError(f"{len(problems)} bad row(s), nothing imported:\n" + "\n".join(problems))
    now = utcnow()
    store.add_imported(
        session,
        (
            Subscriber(
                email=row.email,
                status=row.status,
                themes=row.themes,
                frequency=row.frequency,
                origin="import",
                confirmed_at=now if row.status == "confirmed" else None,
            )
            for row in rows
        ),
    )
    return len(rows)


def write_csv(records: Iterable[dict], out: io.TextIOBase) -> int:
    """Write subscriber records (`store.subscribers.subscriber_record`) as CSV, themes joined by `;`; return how
    many."""
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    count = 0
    for record in records:
        writer.writerow({**record, "themes": ";".join(record["themes"])})
        count += 1
    return count
