"""Subscribers: normalised unique addresses, the CLI, and CSV import that is all or nothing with per-row errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from digest.cli import app
from digest.errors import SubscriberError
from digest.store import session_scope
from digest.store import subscribers as store

THEMES = """
[[themes]]
name = "Language models"

[[themes]]
name = "Agents"
"""


@pytest.fixture
def cli(write_config):
    write_config(THEMES)
    runner = CliRunner()

    def run(*args: str):
        return runner.invoke(app, list(args))

    return run


def error_text(result) -> str:
    """The `Error: ...` a failing command prints."""
    assert result.exit_code == 1
    return result.output


def test_addresses_are_validated_normalised_and_unique(engine):
    with session_scope(engine) as session:
        added = store.add_subscriber(session, "  Ada@EXAMPLE.com ", [], "daily")
        assert added.email == "ada@example.com" and added.status == "pending"
        with pytest.raises(SubscriberError, match="already a subscriber"):
            store.add_subscriber(session, "ada@example.COM", [], "daily")
        with pytest.raises(SubscriberError, match="not a valid email address"):
            store.add_subscriber(session, "ada@@example.com", [], "daily")


def test_a_confirmation_link_never_brings_back_someone_who_left(engine):
    with session_scope(engine) as session:
        subscriber = store.add_subscriber(session, "gone@example.com", [], "daily", "confirmed")
        store.unsubscribe(subscriber)
        store.confirm_subscriber(subscriber)
        assert subscriber.status == "unsubscribed"


def test_cli_adds_lists_and_removes_subscribers(cli):
    assert cli("subscribers", "add", "a@example.com", "--themes", "Agents", "--frequency", "both", "--confirmed").exit_code == 0
    assert cli("subscribers", "add", "b@example.com").exit_code == 0
    listed = [json.loads(line) for line in cli("subscribers", "list", "--json").stdout.splitlines()]
    assert [(r["email"], r["status"], r["themes"], r["frequency"]) for r in listed] == [
        ("a@example.com", "confirmed", ["Agents"], "both"), ("b@example.com", "pending", [], "daily")]
    assert cli("subscribers", "remove", "A@example.com").exit_code == 0
    assert "a@example.com" not in cli("subscribers", "list").stdout


def test_cli_explains_unknown_themes_and_frequencies(cli):
    result = cli("subscribers", "add", "a@example.com", "--themes", "Robots", "--frequency", "hourly")
    assert "unknown theme(s): Robots" in error_text(result)


def test_import_writes_nothing_when_any_row_is_bad_and_names_each_one(cli, tmp_path):
    rows = ("email,themes,frequency\n"
            "ok@example.com,Agents,daily\n"
            "not-an-address,,daily\n"
            "fine@example.com,Robots,weekly\n"
            "OK@example.com,,daily\n"
            "late@example.com,,hourly\n")
    (tmp_path / "subs.csv").write_text(rows)

    result = cli("subscribers", "import", "subs.csv")

    for expected in ("line 3: 'not-an-address' is not a valid email address", "line 4: unknown theme(s): Robots",
                     "line 5: ok@example.com repeats line 2", "line 6: unknown frequency 'hourly'"):
        assert expected in error_text(result)
    assert cli("subscribers", "list").stdout == ""


def test_import_refuses_addresses_already_subscribed(cli, tmp_path):
    cli("subscribers", "add", "old@example.com")
    (tmp_path / "subs.csv").write_text("email\nnew@example.com\nold@example.com\n")
    result = cli("subscribers", "import", "subs.csv")
    assert "subs.csv: 1 bad row(s), nothing imported:\nline 3: old@example.com is already a subscriber" in error_text(result)
    assert "new@example.com" not in cli("subscribers", "list").stdout


def test_export_then_import_round_trips(cli, tmp_path, monkeypatch):
    cli("subscribers", "add", "a@example.com", "--themes", "Agents", "--themes", "Language models", "--confirmed")
    cli("subscribers", "add", "b@example.com", "--frequency", "weekly")
    assert cli("subscribers", "export", "subs.csv").exit_code == 0
    before = cli("subscribers", "list", "--json").stdout

    monkeypatch.setenv("DIGEST_DATABASE_URL", f"sqlite:///{tmp_path / 'fresh.db'}")
    result = cli("subscribers", "import", "subs.csv")

    assert result.exit_code == 0, result.output
    strip = lambda text: [{k: v for k, v in json.loads(line).items() if k not in ("created_at", "confirmed_at", "origin")}
                          for line in text.splitlines()]
    assert strip(cli("subscribers", "list", "--json").stdout) == strip(before)


def test_deliveries_lists_what_happened_to_whom(cli):
    result = cli("deliveries", "--json")
    assert result.exit_code == 0 and result.stdout == ""


def test_send_needs_an_edition_or_a_period(cli):
    result = cli("send")
    assert "give either --edition ID or --period" in error_text(result)


def test_send_of_an_unknown_edition_points_to_the_editions_listing(cli):
    assert "no edition 42 (see `digest editions`)" in error_text(cli("send", "--edition", "42"))


def test_import_of_a_file_that_is_not_utf8_names_the_file(cli, tmp_path):
    (tmp_path / "subs.csv").write_bytes("email\nzoë@example.com\n".encode("latin-1"))
    assert "subs.csv: line 2: not UTF-8 text" in error_text(cli("subscribers", "import", "subs.csv"))
