"""An explicit registry of engines, built by the app's wiring function, never at import time."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ovrunner.engines.base import Engine, ModelRef
from ovrunner.errors import EngineNotFoundError


class EngineRegistry:
    def __init__(self, engines: Iterable[Engine] = ()) -> None:
        self._engines: dict[str, Engine] = {}
        for engine in engines:
            self.add(engine)

    def add(self, engine: Engine) -> None:
        if engine.name in self._engines:
            raise ValueError(f"engine {engine.name!r} is registered twice")
        self._engines[engine.name] = engine

    def get(self, name: str) -> Engine:
        try:
            return self._engines[name]
        except KeyError:
            raise EngineNotFoundError(f"no engine named {name!r}") from None

    def context_window_of(self, engine: str) -> Callable[[ModelRef], int]:
        """Reads a model's trained context window with `engine`, without loading it."""
        describe = self.get(engine).describe
        return lambda model: describe(model).context_window

    def __contains__(self, name: object) -> bool:
        return name in self._engines

    def __iter__(self) -> Iterator[Engine]:
        return iter(self._engines.values())
