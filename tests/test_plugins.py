"""Plugins: summarisers and mail transports are found through entry points, digest's own and those of any
installed package alike. The third-party package here is real: a module and its dist-info folder on sys.path,
which is how pip installs one."""

from __future__ import annotations

import pytest

from digest.config import load_config
from digest.deliver.transports import TRANSPORTS, get_transport
from digest.errors import ConfigError, SummariserError
from digest.pipeline import send_edition
from digest.store import open_database
from digest.summarise.base import SUMMARISERS, backend_class
from digest.summarise.core import summarise_papers
from test_deliver import THEMES, add_edition, add_subscribers, email_settings
from test_summarise import add_papers, corpus

pytestmark = pytest.mark.usefixtures("secret")

PLUGIN = '''
from digest.deliver.transports import Transport
from digest.summarise.base import Summariser


class MemoryTransport(Transport):
    """Keeps each message's recipients instead of sending it."""

    sent = []

    def send(self, message):
        MemoryTransport.sent.append(message.recipients)
        return "250 kept"


class TitleSummariser(Summariser):
    """Answers with the title, and notes what it was asked."""

    asked = []

    def summarise(self, tasks, strict=False):
        TitleSummariser.asked.extend(task.title for task in tasks)
        return [task.title for task in tasks]
'''

ENTRY_POINTS = """
[digest.transports]
memory = digest_test_plugin:MemoryTransport

[digest.summarisers]
title = digest_test_plugin:TitleSummariser
"""


@pytest.fixture
def plugin(install_plugin):
    """The package `digest-test-plugin` installed for this test; returns its module's name."""
    install_plugin(ENTRY_POINTS, {"digest_test_plugin": PLUGIN})
    return "digest_test_plugin"


def test_the_built_in_backends_are_declared_as_entry_points():
    assert {"transformers", "openai", "extractive"} <= set(SUMMARISERS.names())
    assert {"smtp", "file"} <= set(TRANSPORTS.names())
    assert backend_class("extractive").__name__ == "ExtractiveSummariser"


def test_an_installed_package_adds_a_transport_that_sends_an_edition(plugin, write_config):
    config = load_config(write_config(THEMES + email_settings(None, transport="memory")))
    engine = open_database(config.database_url)
    edition_id = add_edition(engine)
    readers = add_subscribers(engine, 2)

    report = send_edition(config, engine, edition_id)

    assert report.sent == 2
    assert type(get_transport(config)).sent == [(reader,) for reader in readers]


def test_an_installed_package_adds_a_summariser(plugin, write_config):
    config = load_config(write_config(THEMES.replace('backend = "extractive"', 'backend = "title"')))
    engine = open_database(config.database_url)
    papers = add_papers(engine, corpus(2))

    report = summarise_papers(config, engine, papers)

    summariser = backend_class("title")
    assert summariser.__module__ == plugin and report.written == 2
    assert {paper.title for paper in papers} <= set(summariser.asked)


def test_unknown_backends_name_the_setting_and_the_known_ones(write_config):
    config = load_config(write_config(email_settings(None, transport="pigeon")))
    with pytest.raises(ConfigError, match=r"unknown \[email\] transport 'pigeon' \(known: .*file, smtp"):
        get_transport(config)
    with pytest.raises(SummariserError, match=r"unknown summariser backend 'oracle' .*extractive, openai, transformers"):
        backend_class("oracle")
