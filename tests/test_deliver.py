"""Delivery: each edition reaches each eligible subscriber exactly once over real SMTP (aiosmtpd on loopback),
through 4xx/5xx replies, dropped connections, bad logins, a SIGKILLed sender and two senders at once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta

import pytest
from sqlalchemy import select

from digest.config import load_config
from digest.deliver.message import EditionMail, Unsubscribe
from digest.errors import DeliveryError
from digest.models import Delivery, Edition, Subscriber, utcnow
from digest.pipeline import send_edition
from digest.render import RenderedEmail
from digest.store import open_database, outbox, session_scope
from digest.store import subscribers as store
from smtp_server import SmtpServer

pytestmark = pytest.mark.usefixtures("secret")

THEMES = """
[[themes]]
name = "Language models"
keywords = ["language model"]

[[themes]]
name = "Agents"
keywords = ["agent"]

[summariser]
backend = "extractive"
"""


def email_settings(server: SmtpServer | None, **overrides) -> str:
    settings = {
        "transport": "smtp", "host": "127.0.0.1", "port": server.port if server else 2525, "security": "none",
        "from": "Test digest <digest@digest.test>", "list_id": "digest.test",
        "unsubscribe_mailto": "leave@digest.test", "rate_per_second": 1000, "retry_backoff_seconds": 0,
    } | overrides
    lines = [f"{key} = {value!r}".replace("'", '"') if isinstance(value, str) else f"{key} = {value}"
             for key, value in settings.items()]
    return "[email]\n" + "\n".join(lines) + "\n"


@pytest.fixture
def setup(write_config, smtp):
    """Write a config pointing at `smtp` (plus overrides) and return (config, engine)."""

    def make(server: SmtpServer | None = smtp, **overrides):
        config = load_config(write_config(THEMES + email_settings(server, **overrides)))
        return config, open_database(config.database_url)

    return make


def add_edition(engine, day: date = date(2026, 11, 23), period: str = "daily", age_hours: float = 0) -> int:
    """A ready edition with one paper in each theme, as `build_edition` stores it."""
    themes = [
        {"name": name, "overview": None,
         "papers": [{"paper_id": index, "title": f"A paper about {name.lower()}", "abs_url": f"https://arxiv.org/abs/{index}",
                     "authors": ["A. Author"], "tldr": f"Findings on {name.lower()}.", "score": 1.0, "reason": "keyword"}]}
        for index, name in enumerate(["Language models", "Agents"], start=1)
    ]
    with session_scope(engine) as session:
        edition = Edition(period=period, start_date=day, end_date=day, title=f"Test digest {day}", status="ready",
                          content={"themes": themes}, content_hash="test", built_at=utcnow() - timedelta(hours=age_hours))
        session.add(edition)
        session.flush()
        return edition.id


def add_subscribers(engine, count: int, **fields) -> list[str]:
    emails = [f"reader{index}@example.com" for index in range(count)]
    with session_scope(engine) as session:
        for email in emails:
            store.add_subscriber(session, email, fields.get("themes", []), fields.get("frequency", "daily"),
                                 fields.get("status", "confirmed"))
    return emails


def rows(engine) -> dict[str, Delivery]:
    with session_scope(engine) as session:
        found = session.execute(select(Subscriber.email, Delivery).join(Subscriber, Subscriber.id == Delivery.subscriber_id))
        return {email: delivery for email, delivery in found}


def received_by(server: SmtpServer) -> dict[str, int]:
    counts: dict[str, int] = {}
    for received in server.messages:
        for rcpt in received.recipients:
            counts[rcpt] = counts.get(rcpt, 0) + 1
    return counts


def test_each_eligible_subscriber_gets_the_edition_once(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    readers = add_subscribers(engine, 3)
    with session_scope(engine) as session:
        store.add_subscriber(session, "pending@example.com", [], "daily")
        store.add_subscriber(session, "weekly@example.com", [], "weekly", "confirmed")
        store.add_subscriber(session, "vision@example.com", ["Other"], "daily", "confirmed")
        store.add_subscriber(session, "agents@example.com", ["Agents"], "both", "confirmed")

    first = send_edition(config, engine, edition_id)
    again = send_edition(config, engine, edition_id)

    assert (first.sent, first.failed, again.sent, again.queued) == (4, 0, 0, 0)
    assert received_by(smtp) == {address: 1 for address in readers + ["agents@example.com"]}
    agents_copy = next(m.message for m in smtp.messages if m.recipients == ["agents@example.com"])
    assert "agents" in agents_copy.get_body(("plain",)).get_content().lower()
    assert "A paper about language models" not in agents_copy.get_body(("plain",)).get_content()


def test_a_send_reports_its_progress_message_by_message(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    add_subscribers(engine, 3)
    calls = []

    send_edition(config, engine, edition_id, on_progress=lambda done, due: calls.append((done, due)))

    assert calls == [(1, 3), (2, 3), (3, 3)]


def test_message_has_bulk_sender_headers_and_the_outbox_message_id(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    add_subscribers(engine, 1)
    send_edition(config, engine, edition_id)

    message = smtp.messages[0].message
    row = rows(engine)["reader0@example.com"]
    assert message["Message-ID"] == row.message_id and row.smtp_reply.startswith("250")
    assert message.get_content_type() == "multipart/alternative"
    assert [part.get_content_type() for part in message.iter_parts()] == ["text/plain", "text/html"]
    assert message["List-Id"] == "Test digest <digest.test>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    https, mailto = [link.strip(" <>") for link in message["List-Unsubscribe"].split(",")]
    assert https.startswith("http://digest.test/unsubscribe/one-click?token=")
    assert mailto == "mailto:leave@digest.test?subject=unsubscribe"
    assert message["Date"] and message["From"] == "Test digest <digest@digest.test>"
    assert "http://digest.test/preferences?token=" in message.get_body(("html",)).get_content()


def test_no_input_can_inject_a_header(config):
    from email import message_from_bytes, policy

    rendered = RenderedEmail("Hello\r\nBcc: victim@example.com", "pre", "<p>x</p>\r\nBcc: body@example.com", "x")
    built = EditionMail(config).build(rendered, "reader@example.com", "<id@digest.test>\nX-Evil: 2",
                                      Unsubscribe("https://digest.test/u?token=a\r\nX-Evil: 1", "leave@digest.test\nBcc: y@z"))
    message = message_from_bytes(built.data, policy=policy.default)
    assert message["Bcc"] is None and message["X-Evil"] is None
    assert message["Subject"] == "Hello Bcc: victim@example.com"
    assert "Bcc: body@example.com" in message.get_body(("html",)).get_content()


def test_temporary_failures_are_retried_with_the_same_message_id(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    add_subscribers(engine, 3)
    smtp.handler.script("reader0@example.com", "451 4.3.0 try later", "drop")
    smtp.handler.script("reader1@example.com", "421 4.7.0 closing")

    report = send_edition(config, engine, edition_id)

    assert (report.sent, report.retried, report.failed) == (3, 3, 0)
    assert received_by(smtp) == {f"reader{index}@example.com": 1 for index in range(3)}
    delivered = rows(engine)["reader0@example.com"]
    assert delivered.attempts == 3
    assert next(m.message["Message-ID"] for m in smtp.messages if m.recipients == ["reader0@example.com"]) == delivered.message_id


def test_temporary_failures_give_up_after_max_attempts(setup, smtp):
    config, engine = setup(max_attempts=2)
    edition_id = add_edition(engine)
    add_subscribers(engine, 1)
    smtp.handler.script("reader0@example.com", "451 later", "451 later", "451 later")
    report = send_edition(config, engine, edition_id)
    assert (report.sent, report.retried, report.failed) == (0, 1, 1)
    assert rows(engine)["reader0@example.com"].status == "failed"


def test_permanent_failures_mark_failed_and_bounce_after_the_configured_count(setup, smtp):
    config, engine = setup(bounce_after=2)
    first, second = add_edition(engine, date(2026, 11, 22)), add_edition(engine, date(2026, 11, 23))
    add_subscribers(engine, 2)
    smtp.handler.refuse("reader0@example.com", "550 5.1.1 no such user")

    one = send_edition(config, engine, first)
    with session_scope(engine) as session:
        assert store.find_subscriber(session, "reader0@example.com").status == "confirmed"
    two = send_edition(config, engine, second)

    assert (one.failed, one.bounced, two.failed, two.bounced) == (1, 0, 1, 1)
    with session_scope(engine) as session:
        assert store.find_subscriber(session, "reader0@example.com").status == "bounced"
    assert "550 5.1.1" in rows(engine)["reader0@example.com"].error
    assert received_by(smtp) == {"reader1@example.com": 2}


def test_refused_login_stops_the_run_and_loses_nothing(setup, tmp_path, monkeypatch):
    with SmtpServer(tls="starttls", login=("digest", "right"), certs=tmp_path) as server:
        config, engine = setup(server, security="starttls", username="digest", ca_file=str(server.ca_file))
        edition_id = add_edition(engine)
        add_subscribers(engine, 3)
        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "wrong")
        with pytest.raises(DeliveryError, match="refused the login"):
            send_edition(config, engine, edition_id)
        assert {(row.status, row.attempts) for row in rows(engine).values()} == {("pending", 0)}

        monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "right")
        assert send_edition(config, engine, edition_id).sent == 3
        assert len(server.messages) == 3


# With implicit TLS the whole connection is encrypted, but aiosmtpd only knows about STARTTLS and warns.
@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
@pytest.mark.parametrize("security", ["starttls", "tls"])
def test_sends_over_starttls_and_implicit_tls_with_login(setup, tmp_path, monkeypatch, security):
    monkeypatch.setenv("DIGEST_SMTP_PASSWORD", "pw")
    tls = "implicit" if security == "tls" else "starttls"
    with SmtpServer(tls=tls, login=("digest", "pw"), certs=tmp_path) as server:
        config, engine = setup(server, security=security, username="digest", ca_file=str(server.ca_file))
        edition_id = add_edition(engine)
        add_subscribers(engine, 2)
        assert send_edition(config, engine, edition_id).sent == 2
        assert len(server.messages) == 2


def test_untrusted_certificate_stops_the_run(setup, tmp_path):
    with SmtpServer(tls="starttls", certs=tmp_path) as server:
        config, engine = setup(server, security="starttls")
        edition_id = add_edition(engine)
        add_subscribers(engine, 1)
        with pytest.raises(DeliveryError, match="TLS"):
            send_edition(config, engine, edition_id)
        assert rows(engine)["reader0@example.com"].status == "pending" and not server.messages


def test_unsubscribing_mid_send_suppresses_the_rest(setup, smtp):
    config, engine = setup(claim_batch=1)
    edition_id = add_edition(engine)
    add_subscribers(engine, 3)
    assert send_edition(config, engine, edition_id, limit=1).sent == 1
    with session_scope(engine) as session:
        store.unsubscribe(store.find_subscriber(session, "reader1@example.com"))

    report = send_edition(config, engine, edition_id)

    assert (report.sent, report.skipped) == (1, 1)
    assert rows(engine)["reader1@example.com"].status == "skipped"
    assert received_by(smtp) == {"reader0@example.com": 1, "reader2@example.com": 1}


def test_a_slow_server_makes_the_sender_hand_back_rows_before_its_lease_ends(setup, smtp):
    config, engine = setup(claim_lease_seconds=1, timeout_seconds=0.5, claim_batch=10)
    edition_id = add_edition(engine)
    readers = add_subscribers(engine, 4)
    smtp.handler.delay_seconds = 0.3  # only two sends fit in the 0.5 s a batch may be held

    report = send_edition(config, engine, edition_id)

    assert report.sent == 4 and received_by(smtp) == {reader: 1 for reader in readers}
    assert {row.attempts for row in rows(engine).values()} == {1}


def test_an_edition_past_its_send_by_age_is_not_sent(setup, smtp):
    config, engine = setup(send_by_hours=24)
    edition_id = add_edition(engine, age_hours=30)
    add_subscribers(engine, 2)
    report = send_edition(config, engine, edition_id)
    assert (report.sent, report.skipped) == (0, 2) and not smtp.messages
    assert {row.error for row in rows(engine).values()} == {"edition older than send_by_hours (24)"}


def test_an_empty_edition_is_sent_to_nobody(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        edition.status, edition.empty_reason, edition.content = "empty", "no new papers", {"themes": []}
    add_subscribers(engine, 2)
    report = send_edition(config, engine, edition_id)
    assert (report.queued, report.sent) == (0, 0) and "no new papers" in report.note and not smtp.messages


def test_hourly_rate_limit_holds_across_runs(setup, smtp):
    config, engine = setup(rate_per_hour=2)
    edition_id = add_edition(engine)
    add_subscribers(engine, 3)
    first = send_edition(config, engine, edition_id)
    second = send_edition(config, engine, edition_id)
    assert (first.sent, first.waiting, second.sent, second.waiting) == (2, 1, 0, 1)
    assert "hourly limit" in second.note and len(smtp.messages) == 2


def test_per_second_rate_spaces_sends_by_the_recorded_times(setup, smtp):
    config, engine = setup(rate_per_second=2)
    edition_id = add_edition(engine)
    add_subscribers(engine, 3)
    send_edition(config, engine, edition_id)
    times = sorted(row.sent_at for row in rows(engine).values())
    assert times[2] - times[0] >= timedelta(seconds=1)


def test_dry_run_builds_messages_and_records_nothing(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    add_subscribers(engine, 2)
    report = send_edition(config, engine, edition_id, dry_run=True)
    assert report.would_send == 2 and rows(engine) == {} and not smtp.messages


def test_file_transport_writes_one_eml_per_message(setup, tmp_path):
    config, engine = setup(transport="file", outbox_dir="mail")
    edition_id = add_edition(engine)
    add_subscribers(engine, 2)
    send_edition(config, engine, edition_id)
    files = sorted((tmp_path / "mail").glob("*.eml"))
    assert len(files) == 2 and b"List-Unsubscribe-Post: List-Unsubscribe=One-Click" in files[0].read_bytes()


@pytest.mark.only_on("postgresql")
def test_postgresql_claims_skip_rows_another_sender_holds(setup, smtp):
    config, engine = setup()
    edition_id = add_edition(engine)
    add_subscribers(engine, 5)
    with session_scope(engine) as session:
        edition = session.get(Edition, edition_id)
        outbox.queue_edition(session, edition, "digest.test")
    with session_scope(engine) as holder:
        held, _ = outbox.claim_batch(holder, edition_id, "holder", 2, 900)
        with session_scope(engine) as other:
            taken, _ = outbox.claim_batch(other, edition_id, "other", 10, 900)
        assert len(held) == 2 and len(taken) == 3
        assert not {c.delivery_id for c in held} & {c.delivery_id for c in taken}
        holder.rollback()
    with session_scope(engine) as session:
        outbox.release_claims(session, "other")
    assert send_edition(config, engine, edition_id).sent == 5
    assert received_by(smtp) == {f"reader{index}@example.com": 1 for index in range(5)}


def start_sender(edition_id: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "digest", "send", "--edition", str(edition_id)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ | {"NO_COLOR": "1"})


def wait_for(condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_killed_sender_resumes_with_at_most_one_duplicate(setup, smtp):
    """The documented bound: after SIGKILL, only the row in flight (accepted, not yet marked) may go twice."""
    config, engine = setup(claim_lease_seconds=1, claim_batch=5)
    edition_id = add_edition(engine)
    readers = add_subscribers(engine, 40)
    smtp.handler.delay_seconds = 0.02
    sender = start_sender(edition_id)
    wait_for(lambda: len(smtp.messages) >= 10)
    sender.send_signal(signal.SIGKILL)
    sender.wait()
    killed_at = len(smtp.messages)
    smtp.handler.delay_seconds = 0
    time.sleep(1.2)  # let the dead sender's claims pass their lease

    restarted = subprocess.run([sys.executable, "-m", "digest", "send", "--edition", str(edition_id)],
                               capture_output=True, text=True, timeout=120)

    assert restarted.returncode == 0, restarted.stderr
    assert restarted.stdout.startswith(f"edition {edition_id}: sent ")
    counts = received_by(smtp)
    assert set(counts) == set(readers) and killed_at < 40
    assert sum(counts.values()) - len(readers) <= 1
    assert {row.status for row in rows(engine).values()} == {"sent"}


def test_two_senders_at_once_never_send_a_row_twice(setup, smtp):
    config, engine = setup(claim_batch=3)
    edition_id = add_edition(engine)
    readers = add_subscribers(engine, 40)
    with session_scope(engine) as session:
        outbox.queue_edition(session, session.get(Edition, edition_id), "digest.test")
    smtp.handler.delay_seconds, smtp.handler.wait_for_clients = 0.01, 2
    senders = [start_sender(edition_id) for _ in range(2)]
    outputs = [sender.communicate(timeout=120) for sender in senders]

    assert [sender.returncode for sender in senders] == [0, 0], outputs
    assert received_by(smtp) == {reader: 1 for reader in readers}
    claimed_by = {row.claimed_by.split(":")[1] for row in rows(engine).values()}
    assert len(claimed_by) == 2, "both senders took part"


def sender_pids(engine) -> set[int]:
    """The processes that have claimed rows so far (a row's claimed_by is host:pid:token)."""
    return {int(row.claimed_by.split(":")[1]) for row in rows(engine).values() if row.claimed_by}


def test_send_workers_share_the_outbox_and_finish_when_one_is_killed(setup, smtp):
    """`digest send --workers 2`: both workers send; one is SIGKILLed mid-run, its claims are handed back at
    once, and the run still sends every row, at most one of them twice (the one the killed worker had in flight)."""
    config, engine = setup(claim_batch=5)
    edition_id = add_edition(engine)
    readers = add_subscribers(engine, 60)
    smtp.handler.delay_seconds, smtp.handler.wait_for_clients = 0.03, 2
    sender = subprocess.Popen([sys.executable, "-m", "digest", "send", "--edition", str(edition_id), "--workers", "2"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=os.environ | {"NO_COLOR": "1"})
    wait_for(lambda: len(smtp.messages) >= 10 and len(sender_pids(engine)) == 2)
    victim = min(sender_pids(engine))
    os.kill(victim, signal.SIGKILL)
    out, err = sender.communicate(timeout=120)

    assert sender.returncode == 0, err
    assert f"worker {victim} died (exit code -9); its claimed rows were handed back" in out
    counts = received_by(smtp)
    assert set(counts) == set(readers) and sum(counts.values()) - len(readers) <= 1
    assert {row.status for row in rows(engine).values()} == {"sent"}
    assert sender.pid not in sender_pids(engine), "the workers sent everything; the watcher had nothing left"
