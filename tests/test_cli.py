"""The `digest` command line through typer's CliRunner: every command documents itself, and the ingest-stage
commands (init, db upgrade, ingest, papers, demo) work on real files."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from digest.cli import app
from digest.config import load_config
from digest.store import current_revision, get_engine, head_revision

FIXTURES = Path(__file__).parent / "fixtures"
runner = CliRunner()


def command_paths(command, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], object]]:
    """Every command and subcommand of the click tree typer builds, with the words that invoke it."""
    found = [(path, command)]
    if hasattr(command, "commands"):
        for name, child in sorted(command.commands.items()):
            found += command_paths(child, (*path, name))
    return found


ALL_COMMANDS = command_paths(typer.main.get_command(app))


@pytest.mark.parametrize(("path", "command"), ALL_COMMANDS, ids=[" ".join(p) or "digest" for p, _ in ALL_COMMANDS])
def test_every_command_and_option_has_help(path, command):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert (command.help or "").strip(), f"`digest {' '.join(path)}` has no help text"
    for param in command.params:
        if param.param_type_name == "option" and param.name != "help":
            assert (param.help or "").strip(), f"`digest {' '.join(path)}` option {param.opts[0]} has no help"


def test_the_command_tree_includes_the_ingest_commands():
    names = {" ".join(path) for path, _ in ALL_COMMANDS}
    assert {"init", "db", "db upgrade", "ingest", "papers", "demo"} <= names


def test_init_writes_a_starter_config_and_creates_the_database(isolated_state):
    result = runner.invoke(app, ["init"])
    assert result.exit_code == 0, result.output
    assert (isolated_state / "config.toml").exists() and (isolated_state / "digest.db").exists()
    assert "Database ready at revision" in result.output
    again = runner.invoke(app, ["init"])
    assert again.exit_code == 0 and "Config already exists" in again.output


def test_db_upgrade_creates_the_schema(write_config, isolated_state):
    write_config()
    result = runner.invoke(app, ["db", "upgrade"])
    assert result.exit_code == 0, result.output
    assert f"Database at revision {head_revision()}" in result.output
    assert current_revision(get_engine(load_config().database_url)) == head_revision()


def sources_config(write_config, *fixtures: tuple[str, str, str]) -> Path:
    blocks = [f'[[sources]]\nname = "{name}"\nkind = "{kind}"\nurl = "{FIXTURES / file}"\n' for name, kind, file in fixtures]
    return write_config("\n".join(blocks))


def test_ingest_prints_a_table_per_source(write_config):
    sources_config(write_config, ("rss", "arxiv-rss", "arxiv_rss.xml"), ("hf", "hf-daily", "hf_daily.json"))
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 0, result.output
    assert "rss" in result.output and "hf" in result.output and "ok" in result.output


def test_ingest_exits_1_when_a_source_fails_after_storing_the_others(write_config):
    sources_config(write_config, ("broken", "feed", "not_a_feed.html"), ("rss", "arxiv-rss", "arxiv_rss.xml"))
    result = runner.invoke(app, ["ingest"])
    assert result.exit_code == 1
    assert "not a feed: the response is an HTML page" in result.output
    papers = runner.invoke(app, ["papers", "--json"])
    assert len(papers.stdout.splitlines()) == 6


def test_ingest_one_source_by_name(write_config):
    sources_config(write_config, ("rss", "arxiv-rss", "arxiv_rss.xml"), ("hf", "hf-daily", "hf_daily.json"))
    assert runner.invoke(app, ["ingest", "--source", "hf"]).exit_code == 0
    lines = runner.invoke(app, ["papers", "--json"]).stdout.splitlines()
    assert {json.loads(line)["sources"][0] for line in lines} == {"hf"}
    unknown = runner.invoke(app, ["ingest", "--source", "nope"])
    assert unknown.exit_code == 1 and "Error: no source named 'nope'" in unknown.output


def test_papers_json_prints_one_object_per_line(write_config):
    sources_config(write_config, ("rss", "arxiv-rss", "arxiv_rss.xml"), ("hf", "hf-daily", "hf_daily.json"))
    runner.invoke(app, ["ingest"])
    result = runner.invoke(app, ["papers", "--json"])
    assert result.exit_code == 0, result.output
    papers = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(papers) == 8
    shared = next(p for p in papers if p["key"] == "arxiv:2407.01002")
    assert shared["sources"] == ["hf", "rss"] and shared["signals"]["upvotes"] is not None
    assert shared["links"]["abs"] == "https://arxiv.org/abs/2407.01002" and shared["links"]["pdf"]
    assert {"id", "title", "abstract", "authors", "announce_type", "first_seen_at", "categories"} <= shared.keys()
    only_rss = runner.invoke(app, ["papers", "--json", "--source", "rss"]).stdout.splitlines()
    assert len(only_rss) == 6
    assert runner.invoke(app, ["papers", "--json", "--since", "2999-01-01"]).stdout == ""


def test_papers_table_and_bad_since(write_config):
    sources_config(write_config, ("rss", "arxiv-rss", "arxiv_rss.xml"))
    runner.invoke(app, ["ingest"])
    table = runner.invoke(app, ["papers"])
    assert table.exit_code == 0 and "6 papers" in table.output
    bad = runner.invoke(app, ["papers", "--since", "last week"])
    assert bad.exit_code == 2 and "YYYY-MM-DD" in bad.output


def test_demo_runs_every_stage_on_the_packaged_samples_in_a_fresh_folder(isolated_state):
    result = runner.invoke(app, ["demo", "--dir", "demo", "--backend", "extractive"])
    assert result.exit_code == 0, result.output
    assert "80 papers" in result.output
    demo = isolated_state / "demo"
    config = load_config(demo / "config.toml")
    assert config.database_url == f"sqlite:///{demo / 'demo.db'}"
    today = datetime.now(config.timezone).date()
    for suffix in ("html", "txt", "md"):
        assert (demo / "digest-output" / f"daily-{today}.{suffix}").stat().st_size > 1000
    assert (demo / "digest-output" / "archive" / "index.html").exists()
    assert len(list((demo / "outbox").glob("*.eml"))) == 2
    again = runner.invoke(app, ["demo", "--dir", "demo", "--backend", "extractive"])
    assert again.exit_code == 0 and "80 papers" in again.output
    assert len(list((demo / "outbox").glob("*.eml"))) == 2
