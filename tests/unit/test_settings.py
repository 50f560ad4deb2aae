from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner.settings import DEFAULT_PORT, load_settings


def test_defaults_bind_loopback_on_the_default_port(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OVRUNNER_CONFIG", raising=False)
    settings = load_settings()
    assert (settings.host, settings.port, settings.model) == (
        "127.0.0.1",
        DEFAULT_PORT,
        "smollm2-135m",
    )


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


def test_the_documented_defaults_are_the_settings_defaults() -> None:
    """docs/settings.md states each default as code holds it: a changed default cannot leave
    the documentation behind. Unset (None) settings say what they fall back to instead."""
    import re

    from ovrunner.settings import Settings

    docs = (Path(__file__).parents[2] / "docs" / "settings.md").read_text()
    wrong = []
    for name, field in Settings.model_fields.items():
        cell = re.search(rf"^\| `{name}` \| ([^|]*) \|", docs, re.MULTILINE)
        assert cell is not None, name
        stated = cell.group(1).strip()
        default = field.get_default(call_default_factory=True)
        if default is None or isinstance(default, Path):
            continue  # a fallback in words ("unset: ..."), or a path under the user's home
        if isinstance(default, bool):
            expected = str(default).lower()
        elif isinstance(default, float) and default.is_integer():
            expected = str(int(default))
        else:
            expected = str(default)
        if not stated.startswith(f"`{expected}`"):
            wrong.append((name, stated, expected))
    assert wrong == []


def test_the_example_file_loads() -> None:
    example = Path(__file__).parents[2] / "configs" / "ovrunner.example.toml"
    settings = load_settings(example)
    assert settings.keep_alive == "5m" and settings.max_body_bytes == 1 << 20


def test_every_setting_is_a_flag_of_every_command() -> None:
    """The flags are made from the fields, so a new setting cannot be left without one."""
    from ovrunner.cli import build_parser
    from ovrunner.cli_common import settings_from
    from ovrunner.settings import Settings

    parser = build_parser()
    for command in (["serve"], ["run", "m", "p"], ["job", "--job", "title", "--input", "x"],
                    ["models", "list"], ["ps"]):  # fmt: skip
        args = parser.parse_args([*command, "--max-queue", "7", "--allowed-hosts", "a.lan",
                                  "--allowed-hosts", "b.lan", "--model-keep-alive", "m=1h",
                                  "--preload", "--busy-counter", "cpu",
                                  "--npu-min-response-len", "32"])  # fmt: skip
        settings = settings_from(args)
        assert settings.max_queue == 7 and settings.allowed_hosts == ["a.lan", "b.lan"]
        assert settings.model_keep_alive == {"m": "1h"} and settings.preload is True
        assert settings.busy_counter == "cpu" and settings.npu_min_response_len == 32
    usage = parser._subparsers._group_actions[0].choices["serve"].format_help()  # type: ignore[union-attr]
    for name, field in Settings.model_fields.items():
        assert "--" + name.replace("_", "-") in usage, name
        assert field.description, name


def test_dynamic_quantization_reaches_the_engine_as_the_plugin_property() -> None:
    """Unset (and no model's IR to choose from) leaves the plugin its default; 0 turns it off; a size the plugin would ignore
    (not a multiple of 16) is refused rather than silently doing nothing."""
    from ovrunner.app import load_config
    from ovrunner.engines.openvino.tuning import device_properties

    def properties(**settings: object) -> dict[str, object]:
        return device_properties(load_config(load_settings(None, **settings)).tuning, "CPU")

    assert "DYNAMIC_QUANTIZATION_GROUP_SIZE" not in properties()
    assert properties(dynamic_quantization_group_size=0)["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 0
    assert properties(dynamic_quantization_group_size=64)["DYNAMIC_QUANTIZATION_GROUP_SIZE"] == 64
    with pytest.raises(ValueError, match="dynamic_quantization_group_size"):
        load_settings(None, dynamic_quantization_group_size=17)
