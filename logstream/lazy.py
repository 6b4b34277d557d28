"""Package attributes imported on first use (PEP 562 module ``__getattr__``).

A process that needs one name of a package (``logstream topic list`` needs ``Admin``) should
not pay for the modules behind the others (the codec and numpy): docs/decisions/0044.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any


def lazy_attributes(
    package: str,
    homes: Mapping[str, str],
    namespace: MutableMapping[str, Any],
    exported: list[str],
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """The ``__getattr__`` and ``__dir__`` of ``package``: ``homes`` maps each lazy name to
    the module that defines it; a name is imported once, then stored in ``namespace`` (the
    package's globals) so later lookups are plain attribute reads."""

    def __getattr__(name: str) -> Any:
        home = homes.get(name)
        if home is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exported))

    return __getattr__, __dir__
