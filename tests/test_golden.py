"""Golden file: a fixture feed in through the CLI (`digest ingest`, `digest summarise`, `digest build`), the whole
plain-text edition out, compared with `tests/fixtures/golden/daily.txt`. Any change to what a reader sees shows
up here and in review. After an intended change, regenerate it with DIGEST_REGENERATE_GOLDEN=1 and read the diff.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

from typer.testing import CliRunner

from digest.cli import app

GOLDEN = Path(__file__).parent / "fixtures" / "golden"
REGENERATE = "DIGEST_REGENERATE_GOLDEN"
# Keyword themes only (`similarity = false`): no embedding model, so the edition is the same on every machine.
CONFIG = f"""
[[sources]]
name = "arxiv-cs"
kind = "arxiv-rss"
url = "{(GOLDEN / 'arxiv-rss.xml').as_uri()}"

[[themes]]
name = "Controllable image generation"
description = "Generating images under spatial and textual control."
keywords = ["ControlNet", "text-to-image", "image generation"]
exclude = ["music"]

[[themes]]
name = "Prompting"
description = "How prompts steer language models."
keywords = ["prompting", "prompt"]

[assign]
similarity = false

[summariser]
backend = "extractive"
"""

runner = CliRunner()


def scrub(text: str, day: str) -> str:
    """The edition with what changes from run to run replaced: the day (in each spelling) and signed link tokens."""
    date = datetime.strptime(day, "%Y-%m-%d")
    for spelling in (day, f"{date:%A} {date.day} {date:%B %Y}", f"{date.day} {date:%B %Y}"):
        text = text.replace(spelling, "<DATE>")
    return re.sub(r"([?&]token=)[^\s&]+", r"\1<TOKEN>", text)


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, f"digest {' '.join(args)}:\n{result.output}"
    return result.output


def test_plain_text_edition_of_a_fixture_feed_matches_the_golden_file(write_config, isolated_state):
    write_config(CONFIG)
    today = datetime.now(ZoneInfo("UTC")).date().isoformat()
    invoke("ingest")
    invoke("summarise")
    [path] = invoke("build", "--period", "daily", "--date", today, "--format", "text").split()
    edition = scrub(Path(path).read_text(encoding="utf-8"), today)

    golden = GOLDEN / "daily.txt"
    if os.environ.get(REGENERATE):
        golden.write_text(edition, encoding="utf-8")
    expected = golden.read_text(encoding="utf-8") if golden.exists() else ""
    assert edition == expected, (
        f"the daily edition differs from {golden}; if the change is intended, regenerate it with "
        f"{REGENERATE}=1 python -m pytest tests/{Path(__file__).name} and review the diff"
    )
