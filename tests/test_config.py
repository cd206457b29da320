"""Configuration: the example file documents every setting, and mistakes are named, not traced."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import pytest

from digest.config import ConfigError, load_settings, setting_keys

EXAMPLE = Path(__file__).parent.parent / "config.example.toml"


def _keys(data: Any, prefix: str = "") -> set[str]:
    keys: set[str] = set()
    for name, value in data.items():
        if isinstance(value, dict):
            keys |= _keys(value, f"{prefix}{name}.")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                keys |= _keys(item, f"{prefix}{name}[].")
        else:
            keys.add(f"{prefix}{name}")
    return keys


def test_every_example_key_is_a_setting_and_every_setting_is_in_the_example() -> None:
    documented = _keys(tomllib.loads(EXAMPLE.read_text(encoding="utf-8")))
    real = setting_keys()

    assert documented - real == set(), "config.example.toml has keys the program does not know"
    assert real - documented == set(), "settings missing from config.example.toml"


def test_the_example_file_loads_as_is() -> None:
    settings = load_settings(EXAMPLE, environ={})
    assert [s.name for s in settings.sources] == ["arxiv-cs-lg", "hf-daily"]


def test_without_a_file_the_bundled_sample_and_sqlite_are_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("DIGEST_CONFIG", raising=False)
    settings = load_settings(environ={})
    assert settings.database.url.startswith("sqlite:///")
    assert Path(settings.sources[0].url).is_file()


@pytest.mark.parametrize(
    "text, named",
    [
        ("[smtp]\nhots = 'mail.example.org'\n", "smtp.hots"),
        ("[smtp]\nport = 'twenty-five'\n", "smtp.port"),
        ("[smtp]\nsecurity = 'ssl'\n", "smtp.security"),
        ("[databse]\nurl = 'sqlite:///x.db'\n", "databse"),
        ("[[sources]]\nname = 'x'\n", "sources[0].url"),
        ("[digest]\ntimezone = 'Mars/Olympus'\n", "digest.timezone"),
        ("[site]\nbase_url = 'papers.example.org'\n", "site.base_url"),
        ("[smtp\nport = 25\n", "not valid TOML"),
    ],
)
def test_mistakes_name_the_key(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert named in str(caught.value)


def test_secrets_come_from_the_environment(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text("[smtp]\nusername = 'digest'\n", encoding="utf-8")
    settings = load_settings(
        path, environ={"DIGEST_SMTP_PASSWORD": "hunter2", "DIGEST_SECRET_KEY": "k" * 32}
    )
    assert settings.smtp.password == "hunter2"
    assert settings.site.secret_key == "k" * 32


def test_relative_feed_paths_are_relative_to_the_config_file(tmp_path: Path) -> None:
    (tmp_path / "feeds").mkdir()
    path = tmp_path / "digest.toml"
    path.write_text("[[sources]]\nname = 'local'\nurl = 'feeds/mine.atom'\n", encoding="utf-8")
    settings = load_settings(path, environ={})
    assert settings.sources[0].url == str(tmp_path / "feeds" / "mine.atom")


def test_a_short_secret_key_is_named_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text("[site]\nsecret_key = 'tooshort-s3cr3t'\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert "site.secret_key" in str(caught.value) and "16 characters" in str(caught.value)
    assert "tooshort-s3cr3t" not in str(caught.value)
    with pytest.raises(ConfigError) as from_env:
        load_settings(None, environ={"DIGEST_SECRET_KEY": "short-s3cr3t"})
    assert "short-s3cr3t" not in str(from_env.value)


def test_a_mistyped_secret_is_named_and_never_shown(tmp_path: Path) -> None:
    path = tmp_path / "digest.toml"
    path.write_text(
        "[smtp]\npassword = ['hunter2-password']\n[database]\nurl = ['postgresql://u:pw9@h/db']\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "smtp.password" in message and "database.url" in message
    assert "hunter2-password" not in message and "pw9" not in message
