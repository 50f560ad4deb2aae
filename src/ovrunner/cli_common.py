"""What the `ovrunner` command and its `models` subcommand share: a flag for every setting,
the settings they make, and plain-text tables."""

from __future__ import annotations

import argparse
import types
import typing
from pathlib import Path
from typing import Any, Literal

from ovrunner.settings import Settings, load_settings


def settings_flags(parser: argparse.ArgumentParser) -> None:
    """A flag for every setting, made from its field: `max_queue` is `--max-queue`, with the
    field's description as help. Unset flags stay None, so the environment, the TOML file
    and the defaults apply beneath them (`settings.load_settings`)."""
    parser.add_argument("--config", type=Path, help="TOML settings file (OVRUNNER_CONFIG)")
    for name, field in Settings.model_fields.items():
        flag = "--" + name.replace("_", "-")
        help_text = f"{field.description} (OVRUNNER_{name.upper()})"
        options: dict[str, Any] = {"dest": f"setting_{name}", "default": None, "help": help_text,
                                   "metavar": name.upper()}  # fmt: skip
        kind = field.annotation
        if isinstance(kind, types.UnionType) or typing.get_origin(kind) is typing.Union:
            kind = next(a for a in typing.get_args(kind) if a is not type(None))  # X | None
        if kind is bool:
            options.pop("metavar")
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **options)
        elif typing.get_origin(kind) is Literal:
            options.pop("metavar")
            parser.add_argument(flag, choices=typing.get_args(kind), **options)
        elif typing.get_origin(kind) is list:
            parser.add_argument(flag, action="append", **options)
        elif typing.get_origin(kind) is dict:
            options["metavar"] = "MODEL=DURATION" if name == "model_keep_alive" else "KEY=VALUE"
            parser.add_argument(flag, action="append", type=_pair, **options)
        else:
            convert: Any = {int: int, float: float, Path: Path}.get(kind, str)  # type: ignore[arg-type]
            parser.add_argument(flag, type=convert, **options)


def _pair(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE")
    return key, value


def settings_from(args: argparse.Namespace) -> Settings:
    flags = {}
    for name in Settings.model_fields:
        value = getattr(args, f"setting_{name}", None)
        if isinstance(value, list) and value and isinstance(value[0], tuple):
            value = dict(value)
        flags[name] = value
    return load_settings(args.config, **flags)


def human_size(size: int | None) -> str:
    if not size:
        return "-"
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return str(size)


def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(str(c)) for c in column) for column in zip(headers, *rows)]
    for row in [headers, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths)).rstrip())
