"""Request bodies: JSON into wire models, every failure a 400 in OpenAI's shape."""

from __future__ import annotations

import json
import logging
import re
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import ClientDisconnect, Request

from ovrunner.errors import (
    ClientDisconnectedError,
    InvalidRequestError,
    InvalidValueError,
    UnsupportedMediaTypeError,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)

# JSON may spell a UTF-16 surrogate as an escape ("\\ud800"); alone (not half of a pair) it
# is no character, and no tokenizer can encode it. Only bodies holding such an escape are
# walked, so the common body costs one scan of its bytes.
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")


async def parse_body(request: Request, model: type[M]) -> M:
    """The body as `model`; 415 unless it is sent as JSON (see `security` for why)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json" and not media_type.endswith("+json"):
        raise UnsupportedMediaTypeError(
            f"the request body must be sent as Content-Type: application/json, not "
            f"{media_type[:80] or 'none'!r}"
        )
    try:
        raw = await request.body()
    except ClientDisconnect:
        # Gone before its body was whole (a 499 in the access log, not a server error).
        raise ClientDisconnectedError("the client closed the connection mid-body") from None
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("the request body nests too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    if _ESCAPED_SURROGATE.search(raw):
        _refuse_lone_surrogates(data, [])
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(exc) from None
    if parsed.model_extra:
        # Field names only, never values: a value could be part of a prompt.
        names = sorted(name[:40] for name in parsed.model_extra)[:10]
        log.debug("ignoring unknown fields on %s: %s", request.url.path, names)
    return parsed


def validation_error(exc: ValidationError) -> InvalidRequestError:
    # Of a union's alternatives, the error deepest into the value says most (a list of
    # items whose third is wrong, rather than "should be a string").
    first = max(exc.errors(include_url=False),
                key=lambda e: len([p for p in e["loc"] if _is_field(p)]))  # fmt: skip
    param = param_path([part for part in first["loc"] if _is_field(part)])
    if first["type"] == "missing":
        return InvalidRequestError(f"missing required parameter {param!r}", param=param)
    return InvalidValueError(f"invalid value for {param!r}: {first['msg']}", param=param)


# Pydantic adds the member type of a union to an error's location ("stop.list[str]");
# those are not fields the client named.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def param_path(parts: list[str | int]) -> str | None:
    """A location as OpenAI spells it in `param`: `messages[0].content`."""
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}" if path else part
    return path or None


def _is_field(part: int | str) -> bool:
    # Union members are tagged by type: `str`, `list[str]`, or a model's class name.
    return isinstance(part, int) or (
        part.isidentifier() and part not in _TYPE_TAGS and not part[0].isupper()
    )


def _refuse_lone_surrogates(value: object, path: list[str | int]) -> None:
    """400 naming the first string (value or key) that holds a lone surrogate."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            param = param_path(path)
            raise InvalidValueError(
                f"invalid value for {param!r}: it holds a lone UTF-16 surrogate, which is "
                "not a character",
                param=param,
            ) from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _refuse_lone_surrogates(key, path)
            _refuse_lone_surrogates(item, [*path, key])
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _refuse_lone_surrogates(item, [*path, index])
