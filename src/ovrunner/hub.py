"""Pulling models from the Hugging Face Hub (or any server with its layout, such as a mirror).

Downloads go through `huggingface_hub`, which shows progress bars and resumes partial files,
into a staging directory inside the store that is kept between attempts; only a complete
download becomes a stored model.
"""

from __future__ import annotations

import logging
import re
import shutil
from collections.abc import Callable

from ovrunner.engines.base import ModelRef
from ovrunner.errors import InvalidValueError, ModelNotFoundError, PullFailedError
from ovrunner.store import ModelStore

log = logging.getLogger(__name__)

# What an OpenVINO GenAI pipeline reads from an IR repository: the model, its tokenizer and
# detokenizer IRs, configs and the chat template. Weights in other formats are skipped.
IR_FILES = ["openvino_*.xml", "openvino_*.bin", "*.json", "*.jinja"]
_REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,95}/[A-Za-z0-9][A-Za-z0-9._-]{0,95}$")


def pull(
    store: ModelStore,
    repo_id: str,
    *,
    model_id: str | None = None,
    filename: str | None = None,
    engine: str = "openvino",
    endpoint: str | None = None,
    revision: str | None = None,
    context_window: Callable[[ModelRef], int],
) -> ModelRef:
    """Download `repo_id` (an OpenVINO IR repository, or one `filename` such as a .gguf)
    and add it to the store as `model_id` (the repository id by default)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, RepositoryNotFoundError

    if not _REPO_ID.match(repo_id) or ".." in repo_id:
        raise InvalidValueError(f"{repo_id!r} is not a repository id like ORG/NAME", param="repo")
    model_id = model_id or repo_id
    staging = store.models_dir / f".pull-{repo_id.replace('/', '--')}"
    try:
        snapshot_download(
            repo_id,
            revision=revision,
            local_dir=staging,
            allow_patterns=[filename] if filename else IR_FILES,
            endpoint=endpoint,
        )
    except RepositoryNotFoundError as exc:
        raise ModelNotFoundError(f"no repository {repo_id!r} on the hub", param="repo") from exc
    except (HfHubHTTPError, OSError) as exc:
        # The partial files stay in the staging directory: the next pull resumes them.
        raise PullFailedError(f"downloading {repo_id!r} failed: {exc}") from exc
    source = staging / filename if filename else staging
    try:
        return store.add(
            source,
            model_id,
            engine=engine,
            source=f"hf:{repo_id}" + (f"/{filename}" if filename else ""),
            context_window=context_window,
        )
    finally:
        shutil.rmtree(staging, ignore_errors=True)
