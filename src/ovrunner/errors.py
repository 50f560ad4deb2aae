"""The error hierarchy: the only module that knows HTTP status codes.

Every error a client can see is an `OvrunnerError` subclass carrying its status, OpenAI error
`type` and `code`, so one handler renders them all in OpenAI's shape and nothing decides a
status by reading message text.
"""

from __future__ import annotations

import time
from typing import Any, ClassVar


class OvrunnerError(Exception):
    status_code: ClassVar[int] = 500
    type: ClassVar[str] = "server_error"
    code: ClassVar[str] = "internal_error"
    # False for failures a retry cannot fix; rendered as `x-should-retry: false`.
    retryable: ClassVar[bool] = True

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param

    def to_body(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "param": self.param,
                "code": self.code,
            }
        }

    def headers(self) -> dict[str, str]:
        return {} if self.retryable else {"x-should-retry": "false"}

    def message_for(self, dialect: str) -> str:
        """The message as the dialect's clients read it (most say the same everywhere)."""
        return self.message


class InvalidRequestError(OvrunnerError):
    status_code = 400
    type = "invalid_request_error"
    code = "invalid_request"


class InvalidValueError(InvalidRequestError):
    code = "invalid_value"


class ContextLengthExceededError(InvalidRequestError):
    """A prompt the window cannot hold with room for the completion. Clients parse this
    error's wording to shorten or compact their conversation and retry (Claude Code lowers
    `max_tokens` on Anthropic's), so each dialect gets the wording its own server uses."""

    code = "context_length_exceeded"

    def __init__(self, message: str, *, param: str | None = None,
                 counts: tuple[int, int | None, int] | None = None) -> None:  # fmt: skip
        super().__init__(message, param=param)
        # (prompt tokens, max_tokens asked for or None, window), for the dialects' wording.
        self.counts = counts

    @classmethod
    def for_prompt(cls, prompt_tokens: int, max_tokens: int | None, window: int,
                   param: str) -> ContextLengthExceededError:  # fmt: skip
        """A prompt that leaves no room in `window`, or less than the `max_tokens` asked for."""
        if max_tokens is not None and prompt_tokens < window:
            message = (f"This model's maximum context length is {window} tokens. However, you "
                       f"requested {prompt_tokens + max_tokens} tokens ({prompt_tokens} in the "
                       f"messages, {max_tokens} in the completion). Please reduce the length "
                       "of the messages or completion.")  # fmt: skip
        else:
            message = (f"This model's maximum context length is {window} tokens. However, your "
                       f"messages resulted in {prompt_tokens} tokens, which leaves no room for "
                       "the completion. Please reduce the length of the messages.")  # fmt: skip
        return cls(message, param=param, counts=(prompt_tokens, max_tokens, window))

    def message_for(self, dialect: str) -> str:
        if self.counts is None or dialect not in (Dialect.ANTHROPIC, Dialect.OLLAMA):
            return self.message
        prompt, max_tokens, window = self.counts
        alone = max_tokens is None or prompt >= window
        if dialect == Dialect.ANTHROPIC:
            if alone:
                return f"prompt is too long: {prompt} tokens > {window} maximum"
            return (f"input length and `max_tokens` exceed context limit: {prompt} + "
                    f"{max_tokens} > {window}, decrease input length or `max_tokens` and "
                    "try again")  # fmt: skip
        if alone:
            return (f"the input length exceeds the context length ({prompt} tokens; the "
                    f"context length is {window})")  # fmt: skip
        return (
            f"the input length and num_predict exceed the context length ({prompt} + "
            f"{max_tokens} > {window})"
        )


class PromptTooLongError(InvalidRequestError):
    """The prompt exceeds an engine's fixed prompt cap (the NPU's MAX_PROMPT_LEN)."""

    code = "prompt_too_long"


class UnsupportedParameterError(InvalidRequestError):
    code = "unsupported_parameter"


class UnsupportedModelError(InvalidRequestError):
    """A model file whose architecture or weight types no engine here can run, refused at
    import or pull (never at the first chat); the message names what it holds and what is
    supported."""

    code = "unsupported_model"


class WrongModeError(InvalidRequestError):
    """A request for another mode than the model's (chat on an embedding model)."""

    code = "model_mode_mismatch"
    _NOUNS: ClassVar[dict[str, str]] = {
        "completion": "a chat and completion model (/v1/chat/completions)",
        "embedding": "an embedding model (/v1/embeddings)",
        "reranking": "a reranking model (/v1/rerank)",
        "transcription": "a speech-to-text model (/v1/audio/transcriptions)",
    }

    def __init__(self, model_id: str, mode: str, wanted: str) -> None:
        super().__init__(
            f"the model {model_id!r} is {self._NOUNS.get(mode, mode)}; "
            f"this request needs {self._NOUNS.get(wanted, wanted).split(' (')[0]}",
            param="model",
        )


class AuthenticationError(OvrunnerError):
    status_code = 401
    type = "authentication_error"
    code = "invalid_api_key"


class HostNotAllowedError(OvrunnerError):
    """The request named a Host this server does not answer to (DNS rebinding)."""

    status_code = 403
    type = "invalid_request_error"
    code = "host_not_allowed"


class StoreReadOnlyError(OvrunnerError):
    """The model store cannot be changed: it is mounted read-only (replicas sharing one)."""

    status_code = 403
    type = "invalid_request_error"
    code = "store_read_only"


class NotFoundError(OvrunnerError):
    status_code = 404
    type = "invalid_request_error"
    code = "not_found"


class ModelNotFoundError(NotFoundError):
    code = "model_not_found"


class MethodNotAllowedError(OvrunnerError):
    status_code = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class BackendMismatchError(OvrunnerError):
    """The stored model is typed for an engine or format that cannot load it."""

    status_code = 409
    type = "invalid_request_error"
    code = "backend_mismatch"


class RequestTooLargeError(OvrunnerError):
    status_code = 413
    type = "invalid_request_error"
    code = "request_too_large"


class UnsupportedMediaTypeError(OvrunnerError):
    status_code = 415
    type = "invalid_request_error"
    code = "unsupported_media_type"


class ClientDisconnectedError(OvrunnerError):
    """The client hung up before its answer was ready; 499 as nginx logs it. Nobody reads
    the body: it exists so the access log tells this apart from a server failure."""

    status_code = 499
    type = "invalid_request_error"
    code = "client_closed_request"


class ModelNotServedError(OvrunnerError):
    """The model exists, but the engine or runner addressed does not serve it."""

    status_code = 421
    type = "invalid_request_error"
    code = "model_not_served"


class RetryLaterError(OvrunnerError):
    """An error whose request may succeed after `retry_after_s` (sent as `Retry-After`)."""

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class QueueFullError(RetryLaterError):
    status_code = 429
    type = "rate_limit_error"
    code = "queue_full"


class EngineError(OvrunnerError):
    """The engine failed while generating; the request may succeed if sent again."""

    code = "engine_error"


class PullFailedError(OvrunnerError):
    """The hub (or mirror) could not deliver the model; partial files are kept to resume."""

    status_code = 502
    code = "pull_failed"


class EngineUnavailableError(OvrunnerError):
    """The engine is not installed or its device is absent: retrying cannot help."""

    status_code = 503
    code = "engine_unavailable"
    retryable = False


class CrashLoopError(EngineUnavailableError):
    """A runner's engine failed again and again in a short time: it is not restarted any
    more until the model is unloaded, or until `retry_at` (monotonic seconds)."""

    def __init__(self, message: str, *, retry_at: float) -> None:
        super().__init__(message)
        self.retry_at = retry_at

    def headers(self) -> dict[str, str]:
        wait = max(1, round(self.retry_at - time.monotonic()))
        return {**super().headers(), "Retry-After": str(wait)}


class ModelLoadFailedError(OvrunnerError):
    status_code = 503
    code = "model_load_failed"
    retryable = False


class BusyCounterNotMovedError(OvrunnerError):
    """A worker generation finished but its device's busy counter did not move: the work
    did not run where it claims. Retrying does not change where it runs."""

    status_code = 503
    code = "busy_counter_not_moved"
    retryable = False


class InsufficientMemoryError(OvrunnerError):
    """Busy runners fill the memory budget; the load may succeed once they are idle."""

    status_code = 503
    code = "insufficient_memory"


class ConversionFailedError(OvrunnerError):
    """Converting a model to OpenVINO IR failed; nothing was added to the store."""

    code = "conversion_failed"
    retryable = False


class ConversionMemoryError(InsufficientMemoryError):
    """The machine has not the memory a conversion needs: refused before it starts."""

    retryable = False


class ShuttingDownError(OvrunnerError):
    """The server is draining after SIGTERM: the request belongs on another replica."""

    status_code = 503
    code = "shutting_down"

    def headers(self) -> dict[str, str]:
        return {"Retry-After": "1", "Connection": "close"}


class NotReadyError(RetryLaterError):
    """The readiness probe's answer while the server should get no traffic."""

    status_code = 503
    code = "not_ready"


class ResponseStoreUnavailableError(RetryLaterError):
    """The database of stored Responses answers cannot be reached or written."""

    status_code = 503
    code = "response_store_unavailable"


class EngineNotFoundError(NotFoundError):
    code = "engine_not_found"


# -- the error shapes of the other dialects -----------------------------------------------------

# Anthropic's error types, by status (its documented set).
_ANTHROPIC_TYPES = {400: "invalid_request_error", 401: "authentication_error",
                    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
                    429: "rate_limit_error", 503: "overloaded_error", 529: "overloaded_error"}  # fmt: skip


class Dialect:
    """Which API's error shape a route answers in, told by its path."""

    OPENAI = "openai"
    ANTHROPIC = "anthropic"
    OLLAMA = "ollama"
    # OpenAI's error shape, but streams of named events with no `[DONE]` (the Responses API).
    RESPONSES = "responses"

    @staticmethod
    def of(path: str) -> str:
        if path.startswith("/api/"):
            return Dialect.OLLAMA
        if path.startswith(("/v1/messages", "/anthropic/")):
            return Dialect.ANTHROPIC
        return Dialect.OPENAI


def error_body(error: OvrunnerError, dialect: str = Dialect.OPENAI) -> dict[str, Any]:
    """The error as the dialect's clients parse it, with the same status code everywhere."""
    if dialect == Dialect.ANTHROPIC:
        kind = _ANTHROPIC_TYPES.get(error.status_code, "api_error")
        if 400 <= error.status_code < 500 and kind == "api_error":
            kind = "invalid_request_error"
        return {"type": "error", "error": {"type": kind, "message": error.message_for(dialect)}}
    if dialect == Dialect.OLLAMA:
        return {"error": error.message_for(dialect)}
    return error.to_body()
