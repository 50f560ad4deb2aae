"""Request bodies: JSON into wire models, every failure a 400 in OpenAI's shape."""

from __future__ import annotations

import json
import logging
from typing import TypeVar

from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from ovrunner.errors import InvalidRequestError, InvalidValueError

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


async def parse_body(request: Request, model: type[M]) -> M:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(f"the request body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequestError("the request body nests too deeply") from None
    if not isinstance(data, dict):
        raise InvalidRequestError("the request body must be a JSON object")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise _to_error(exc) from None
    if parsed.model_extra:
        # Field names only, never values: a value could be part of a prompt.
        names = sorted(name[:40] for name in parsed.model_extra)[:10]
        log.debug("ignoring unknown fields on %s: %s", request.url.path, names)
    return parsed


def _to_error(exc: ValidationError) -> InvalidRequestError:
    first = exc.errors(include_url=False)[0]
    param = ".".join(str(part) for part in first["loc"] if _is_field(part)) or None
    if first["type"] == "missing":
        return InvalidRequestError(f"missing required parameter {param!r}", param=param)
    return InvalidValueError(f"invalid value for {param!r}: {first['msg']}", param=param)


# Pydantic adds the member type of a union to an error's location ("stop.list[str]");
# those are not fields the client named.
_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none"}


def _is_field(part: int | str) -> bool:
    return isinstance(part, int) or (part.isidentifier() and part not in _TYPE_TAGS)
