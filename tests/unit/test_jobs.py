"""Job presets and their bounds."""

from __future__ import annotations

from pathlib import Path

import pytest

from ovrunner.errors import InvalidValueError
from ovrunner.jobs import MAX_INPUT_CHARS, JobPresets, check_bounds, preloaded_runners, shape_text


@pytest.fixture
def presets() -> JobPresets:
    return JobPresets.load()


def test_builtin_presets_and_the_memory_alias(presets: JobPresets) -> None:
    assert presets.names() == ["memory_candidate", "notification", "summary", "title"]
    assert presets.get("memory").name == "memory_candidate"
    defaults = {name: presets.get(name).default_max_new_tokens for name in presets.names()}
    assert defaults == {"title": 32, "summary": 160, "notification": 96, "memory_candidate": 192}
    notification = presets.get("notification")
    assert notification.output == "json"
    assert notification.json_schema is not None
    assert set(notification.json_schema["required"]) == {"severity", "category", "summary",
                                                          "action_needed"}  # fmt: skip


def test_unknown_job_is_a_400_naming_job(presets: JobPresets) -> None:
    with pytest.raises(InvalidValueError) as caught:
        presets.get("poem")
    assert caught.value.param == "job"


def test_a_user_file_adds_and_overrides_presets(tmp_path: Path) -> None:
    extra = tmp_path / "jobs.toml"
    extra.write_text(
        '[jobs.haiku]\nprompt = "Write a haiku about {input}"\ndefault_max_new_tokens = 40\n\n'
        '[jobs.title]\nprompt = "Title: {input}"\ndefault_max_new_tokens = 12\n'
    )
    presets = JobPresets.load(extra)
    assert "haiku" in presets.names()
    assert presets.get("title").default_max_new_tokens == 12
    assert presets.get("summary").default_max_new_tokens == 160


@pytest.mark.parametrize(
    "body",
    ['[jobs.x]\nprompt = "no placeholder"\ndefault_max_new_tokens = 4\n',
     '[jobs.x]\ndefault_max_new_tokens = 300\n',
     '[jobs.x]\ndefault_max_new_tokens = 4\nunknown = 1\n'],
)  # fmt: skip
def test_invalid_user_presets_are_refused(tmp_path: Path, body: str) -> None:
    extra = tmp_path / "jobs.toml"
    extra.write_text(body)
    with pytest.raises(ValueError, match="invalid job presets"):
        JobPresets.load(extra)


@pytest.mark.parametrize(
    ("text", "max_new_tokens", "param"),
    [("", None, "input"), ("   \n", None, "input"), ("x" * (MAX_INPUT_CHARS + 1), None, "input"),
     ("ok", 0, "max_new_tokens"), ("ok", 257, "max_new_tokens")],
)  # fmt: skip
def test_bounds(presets: JobPresets, text: str, max_new_tokens: int | None, param: str) -> None:
    with pytest.raises(InvalidValueError) as caught:
        check_bounds(presets.get("summary"), text, max_new_tokens)
    assert caught.value.param == param


def test_bounds_accept_the_edges(presets: JobPresets) -> None:
    title = presets.get("title")
    assert check_bounds(title, "x" * MAX_INPUT_CHARS, None) == 32
    assert check_bounds(title, "x", 256) == 256
    assert check_bounds(title, "x", 1) == 1


def test_titles_are_one_line_of_eight_words(presets: JobPresets) -> None:
    title = presets.get("title")
    assert shape_text(
        title, '\n"Title: A very long title with far more than eight words in it"\nmore'
    ) == ("A very long title with far more than")
    assert shape_text(presets.get("summary"), "  line one\nline two ") == "line one\nline two"


def test_preload_loads_one_copy_of_the_default_models_weights_per_engine(
    presets: JobPresets, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ovrunner import jobs
    from ovrunner.settings import Settings

    monkeypatch.setattr(jobs, "npu_present", lambda: False)
    settings = Settings(store_dir=tmp_path)
    # The plain runner only: the summary job's prompt-lookup runner would be a second copy
    # of the weights, so it loads on the first summary job instead.
    assert preloaded_runners(presets, settings) == ["openvino"]
    elsewhere = tmp_path / "jobs.toml"
    elsewhere.write_text('[jobs.summary]\nprompt = "{input}"\ndefault_max_new_tokens = 8\n'
                         'prompt_lookup = true\nmodel = "other"\n')  # fmt: skip
    # A job on another model is that model's business: not the default model's preload.
    assert preloaded_runners(JobPresets.load(elsewhere), settings) == ["openvino"]
    # Where an NPU is present the default model's `auto` jobs run there: its runner too.
    monkeypatch.setattr(jobs, "npu_present", lambda: True)
    assert preloaded_runners(presets, settings) == ["openvino", "openvino-npu"]
