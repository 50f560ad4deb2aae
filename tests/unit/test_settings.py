from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner.settings import DEFAULT_PORT, load_settings


def test_defaults_bind_loopback_on_the_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVRUNNER_CONFIG", raising=False)
    settings = load_settings()
    assert (settings.host, settings.port, settings.model) == ("127.0.0.1", DEFAULT_PORT, "smollm2-135m")


def test_flags_beat_environment_beat_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "ovrunner.toml"
    config.write_text('max_queue = 3\nport = 1111\ndevice = "GPU"\n')
    monkeypatch.setenv("OVRUNNER_PORT", "2222")
    monkeypatch.setenv("OVRUNNER_MAX_QUEUE", "5")
    settings = load_settings(config, max_queue=7, port=None)
    assert settings.max_queue == 7  # flag
    assert settings.port == 2222  # environment over file
    assert settings.device == "GPU"  # file over default


def test_unknown_keys_in_the_file_are_refused(tmp_path: Path) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("max_queu = 3\n")
    with pytest.raises(ValueError, match="max_queu"):
        load_settings(config)


def test_every_setting_is_documented() -> None:
    from ovrunner.settings import Settings

    docs = (Path(__file__).parents[2] / "docs" / "settings.md").read_text()
    assert [name for name in Settings.model_fields if f"| `{name}` |" not in docs] == []


def test_the_example_file_loads() -> None:
    example = Path(__file__).parents[2] / "configs" / "ovrunner.example.toml"
    settings = load_settings(example)
    assert settings.keep_alive == "5m" and settings.max_body_bytes == 1 << 20
