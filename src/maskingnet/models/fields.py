"""Values read from a model file, checked against a type and a range before anything is built from them.

A model file is someone else's JSON: a refiner tile of 4000 made one cut-out take 71 s and 4.7 GB, 8.5 or
1e9 a traceback. Each reader here raises ``ValueError`` with one line naming the field, the value (cut
short) and what is allowed; the loaders turn it into ``CheckpointError``.
"""

from __future__ import annotations

import math
from typing import Any


def _shown(value: Any) -> str:
    return repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."


def whole(name: str, value: Any, low: int, high: int) -> int:
    """``value`` as an int in ``low..high``; a float must be whole (``64.0`` is 64, ``8.5`` is refused)."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    if number is None or not math.isfinite(number) or number != int(number) or not low <= number <= high:
        raise ValueError(f"{name} {_shown(value)}: expected a whole number from {low} to {high}")
    return int(number)


def number(name: str, value: Any, low: float, high: float, *, above_low: bool = False) -> float:
    """``value`` as a finite float in ``[low, high]`` (``(low, high]`` when ``above_low``)."""
    number = value if isinstance(value, (int, float)) and not isinstance(value, bool) else None
    fits = number is not None and math.isfinite(number) and (low < number if above_low else low <= number)
    if not fits or number > high:
        span = f"above {low:g} and at most {high:g}" if above_low else f"from {low:g} to {high:g}"
        raise ValueError(f"{name} {_shown(value)}: expected a number {span}")
    return float(number)


def text(name: str, value: Any, longest: int = 100) -> str:
    if not isinstance(value, str) or len(value) > longest:
        raise ValueError(f"{name} {_shown(value)}: expected text of at most {longest} characters")
    return value


def wholes(name: str, value: Any, low: int, high: int, most: int, fewest: int = 0) -> tuple[int, ...]:
    """A list of ``fewest..most`` whole numbers, each in ``low..high``."""
    if not isinstance(value, (list, tuple)) or not fewest <= len(value) <= most:
        raise ValueError(f"{name} {_shown(value)}: expected a list of {fewest} to {most} whole numbers")
    return tuple(whole(f"{name}[{i}]", item, low, high) for i, item in enumerate(value))


def known_fields(what: str, values: Any, names: set[str]) -> dict[str, Any]:
    """``values`` as a dict whose keys are all in ``names``."""
    if not isinstance(values, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(values).__name__}")
    unknown = sorted(set(values) - names)
    if unknown:
        raise ValueError(f"unknown {what} fields: {', '.join(map(str, unknown))[:200]}")
    return values
