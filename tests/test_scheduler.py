"""The daemon: one cron job per [schedule] entry, errors logged and survived, the whole pipeline run by its jobs."""

import logging

import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.scheduler import build_scheduler, run_job
from conftest import FIXTURES


def test_scheduler_has_one_job_per_schedule_entry_in_configured_timezone(write_config, engine):
    config = load_config(write_config('[schedule]\ndaily = "30 6 * * *"\n', base='[digest]\ntimezone = "Europe/Berlin"\n'))
    scheduler = build_scheduler(config, engine)
    jobs = {job.id: job for job in scheduler.get_jobs()}
    assert set(jobs) == {"ingest", "daily", "weekly"}
    assert str(jobs["daily"].trigger.timezone) == "Europe/Berlin"
    assert "hour='6', minute='30'" in str(jobs["daily"].trigger)
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())


def test_invalid_cron_expression_names_the_key(write_config, engine):
    config = load_config(write_config('[schedule]\nweekly = "every monday"\n'))
    with pytest.raises(ConfigError, match=r"schedule\.weekly.*every monday"):
        build_scheduler(config, engine)


def test_ingest_job_logs_a_failed_source_and_keeps_the_others(write_config, engine, caplog):
    config = load_config(write_config(f"""
[[sources]]
name = "good"
kind = "arxiv-rss"
url = "{FIXTURES / 'arxiv_rss.xml'}"

[[sources]]
name = "broken"
kind = "arxiv-rss"
url = "{FIXTURES / 'not_a_feed.html'}"
"""))
    with caplog.at_level(logging.WARNING):
        assert run_job("ingest", config, engine)
    assert "broken" in caplog.text
    from digest.pipeline import paper_listing

    assert paper_listing(engine)
