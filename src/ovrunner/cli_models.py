"""`ovrunner models`: the model store from the command line (list, import, pull, create, rm).

Import and pull convert a GGUF to compressed OpenVINO IR once (`conversion.py`); the download
and the conversion each show a progress bar.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from ovrunner.cli_common import human_size, print_table, settings_flags, settings_from
from ovrunner.conversion import ConversionStatus, OnProgress
from ovrunner.settings import Settings


def _store(args: argparse.Namespace) -> tuple[Settings, Any, Any]:
    from ovrunner.app import default_registry
    from ovrunner.store import ModelStore

    settings = settings_from(args)
    return settings, ModelStore(settings.store_dir), default_registry(settings)


def _models_list(args: argparse.Namespace) -> int:
    _, store, registry = _store(args)
    rows = []
    for model_id in store.list_ids():
        engine = store.get(model_id).engine
        reader = registry.context_window_of(engine) if engine in registry else (lambda _: 0)
        rows.append(store.summary(model_id, reader))
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print_table(["ID", "ENGINE", "FORMAT", "WEIGHTS", "SIZE", "CONTEXT", "SOURCE"],
           [[r["id"], r["engine"], r["format"], r.get("weight_format") or "-",
             human_size(r["size_bytes"]), str(r["context_window"] or "?"), r["source"]]
            for r in rows])  # fmt: skip
    return 0


class _ConversionBar:
    """A terminal progress bar over a conversion's steps (tqdm, which the Hub client uses)."""

    def __init__(self) -> None:
        self._bar: Any = None

    def __call__(self, status: ConversionStatus) -> None:
        from tqdm import tqdm

        if self._bar is None:
            self._bar = tqdm(total=status.total or None, unit="tensor", desc="converting")
        if status.stage == "dequantize":
            self._bar.total = status.total
            self._bar.n = status.done
        self._bar.set_description(status.describe())
        self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _with_bar(work: Any) -> Any:
    bar = _ConversionBar()
    try:
        return work(bar)
    finally:
        bar.close()


def _models_import(args: argparse.Namespace) -> int:
    from ovrunner import conversion

    settings, store, registry = _store(args)
    path = Path(args.path).expanduser()

    def work(on_progress: OnProgress) -> Any:
        return conversion.add_model(
            store, path, args.name or path.stem, engine=args.engine, source=f"import:{path}",
            weight_format=settings.weight_format, on_progress=on_progress,
            context_window=registry.context_window_of(args.engine),
        )  # fmt: skip

    model = _with_bar(work)
    print(f"imported {model.id} ({model.format.value})")
    return 0


def _models_create(args: argparse.Namespace) -> int:
    _, store, _ = _store(args)
    model = store.derive(args.base, args.name, prompt_lookup=args.prompt_lookup,
                         draft_model=args.draft_model)  # fmt: skip
    how = "prompt lookup" if model.prompt_lookup else "plain"
    if model.draft is not None:
        how = f"draft model {model.draft.id}"
    print(f"created {model.id} from {args.base} ({how})")
    return 0


def _models_pull(args: argparse.Namespace) -> int:
    from ovrunner import hub

    settings, store, registry = _store(args)

    def work(on_progress: OnProgress) -> Any:
        return hub.pull(
            store, args.repo, model_id=args.name, filename=args.file, engine=args.engine,
            endpoint=settings.hf_endpoint, revision=args.revision,
            weight_format=settings.weight_format, on_progress=on_progress,
            context_window=registry.context_window_of(args.engine),
        )  # fmt: skip

    model = _with_bar(work)
    print(f"pulled {model.id} ({model.format.value})")
    return 0


def _models_rm(args: argparse.Namespace) -> int:
    _, store, _ = _store(args)
    store.remove(args.model)
    print(f"removed {args.model}")
    return 0


def add_models_parser(commands: Any) -> None:
    models = commands.add_parser("models", help="the model store").add_subparsers(
        dest="models_command", required=True
    )
    listing = models.add_parser("list", help="stored models with their sizes")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=_models_list)
    importing = models.add_parser(
        "import", help="add a local GGUF file (converted to OpenVINO IR) or OpenVINO IR directory"
    )
    importing.add_argument("path")
    importing.add_argument("--name", help="model id (the file or directory name if unset)")
    importing.add_argument("--engine", default="openvino")
    importing.set_defaults(handler=_models_import)
    creating = models.add_parser(
        "create", help="a model on a stored model's files with its own decoding settings"
    )
    creating.add_argument("name", help="the new model's id")
    creating.add_argument("--from", dest="base", required=True, help="the stored base model")
    assisted = creating.add_mutually_exclusive_group()
    assisted.add_argument("--prompt-lookup", action="store_true",
                          help="propose tokens from n-grams of the prompt (summaries, edits)")  # fmt: skip
    assisted.add_argument("--draft-model", help="a smaller stored model that proposes tokens")
    creating.set_defaults(handler=_models_create)
    pulling = models.add_parser(
        "pull", help="download a model from the Hugging Face Hub (OpenVINO IR or GGUF)"
    )
    pulling.add_argument("repo", help="ORG/NAME, ORG/NAME:QUANT (such as Q4_K_M) or ORG/NAME:FILE")
    pulling.add_argument("--name", help="model id (the repository id if unset)")
    pulling.add_argument("--file", help="one file to fetch (a .gguf) instead of the IR files")
    pulling.add_argument("--revision")
    pulling.add_argument("--engine", default="openvino")
    pulling.set_defaults(handler=_models_pull)
    removing = models.add_parser("rm", help="delete a stored model")
    removing.add_argument("model")
    removing.set_defaults(handler=_models_rm)
    for command in (listing, importing, creating, pulling, removing):
        settings_flags(command)
