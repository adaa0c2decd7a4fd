"""Configuration: lookup order, validation errors that name the key and file, environment overrides."""


import pytest

from digest.config import load_config
from digest.errors import ConfigError
from digest.resources import reference_config

pytestmark = pytest.mark.no_database  # nothing here opens the database: run once, not per database


def test_sample_config_in_repository_is_valid():
    config = load_config(reference_config())
    assert config.sources and config.themes
    assert config.database_url == f"sqlite:///{reference_config().parent / 'digest.db'}"


def test_config_found_through_environment_variable(write_config, monkeypatch, tmp_path):
    path = write_config('[digest]\ntitle = "Env"\n', base="")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("DIGEST_CONFIG", str(path))
    assert load_config().digest.title == "Env"


def test_explicit_path_wins_over_environment(tmp_path, monkeypatch):
    explicit = tmp_path / "explicit.toml"
    explicit.write_text('[digest]\ntitle = "Explicit"\n')
    monkeypatch.setenv("DIGEST_CONFIG", str(tmp_path / "missing.toml"))
    assert load_config(explicit).digest.title == "Explicit"


def test_missing_config_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match=r"missing\.toml: config file not found"):
        load_config(tmp_path / "missing.toml")


def test_unknown_key_names_key_and_file(write_config):
    path = write_config("[[sources]]\nname = \"a\"\nkind = \"feed\"\nurl = \"x\"\ncategorys = []\n")
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert str(path) in str(error.value)
    assert "unknown key 'sources[0] (a).categorys'" in str(error.value)


def test_wrong_type_names_key(write_config):
    path = write_config("[ingest]\nretries = \"many\"\n", base="")
    with pytest.raises(ConfigError, match=r"key 'ingest.retries'"):
        load_config(path)


def test_missing_required_field_names_key(write_config):
    path = write_config("[[sources]]\nname = \"a\"\nkind = \"feed\"\n", base="")
    with pytest.raises(ConfigError, match=r"missing required key 'sources\[0\] \(a\).url'"):
        load_config(path)


def test_bad_source_kind_is_rejected(write_config):
    path = write_config("[[sources]]\nname = \"a\"\nkind = \"gopher\"\nurl = \"x\"\n", base="")
    with pytest.raises(ConfigError, match=r"sources\[0\] \(a\).kind"):
        load_config(path)


def test_invalid_toml_reports_line(write_config):
    path = write_config("[digest\ntitle = 1\n", base="")
    with pytest.raises(ConfigError, match=r"invalid TOML: .*line 2"):
        load_config(path)


def test_unknown_timezone_is_rejected(write_config):
    path = write_config('[digest]\ntimezone = "Mars/Olympus"\n', base="")
    with pytest.raises(ConfigError, match="digest.timezone"):
        load_config(path)


def test_duplicate_source_names_are_rejected(write_config):
    source = '[[sources]]\nname = "a"\nkind = "feed"\nurl = "x"\n'
    with pytest.raises(ConfigError, match="duplicate sources name"):
        load_config(write_config(source + source, base=""))


def test_database_url_environment_override(write_config, monkeypatch):
    monkeypatch.setenv("DIGEST_DATABASE_URL", "postgresql+psycopg://u@h/db")
    assert load_config(write_config()).database_url == "postgresql+psycopg://u@h/db"


def test_relative_sqlite_path_resolves_beside_config(write_config, tmp_path):
    assert load_config(write_config()).database_url == f"sqlite:///{tmp_path / 'digest.db'}"
