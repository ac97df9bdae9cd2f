"""Old import paths of modules that moved, kept working for one release with a warning.

The package was reorganised into layers (see docs/architecture.md). Code written against the
old paths (``datavalue.influence.gradients``, ``datavalue.retrain``, ...) still imports: a
finder placed first on ``sys.meta_path`` answers an old name with the *same* module object as
its new name (never a second copy, so classes and ``isinstance`` agree) and emits a
``DeprecationWarning`` naming the new path. One table, :data:`MOVED`, lists every move.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings
from typing import Any

#: Old module -> new module. A package's entry covers its submodules (longest match wins).
MOVED: dict[str, str] = {
    "datavalue.influence.attack": "datavalue.attribution.applications.attack",
    "datavalue.influence.mismatch": "datavalue.attribution.applications.mismatch",
    "datavalue.influence": "datavalue.attribution",
    "datavalue.exceptions": "datavalue._core.exceptions",
    "datavalue._validation": "datavalue._core.validation",
    "datavalue._io": "datavalue._core.io",
    "datavalue.parallel": "datavalue._core.parallel",
    "datavalue.checkpoint": "datavalue._core.checkpoint",
    "datavalue.result": "datavalue._core.result",
    "datavalue.fitdata": "datavalue.data.fitdata",
    "datavalue.utility": "datavalue.valuation.utility",
    "datavalue.models": "datavalue.valuation.models",
    "datavalue.registry": "datavalue.valuation.registry",
    "datavalue.retrain": "datavalue.evaluate.retrain",
    "datavalue.augment": "datavalue.actions.augment",
    "datavalue.compare": "datavalue.actions.compare",
    "datavalue.explain": "datavalue.actions.explain",
}


#: Where the new module is private, what to import instead.
HINTS: dict[str, str] = {
    "datavalue.exceptions": "import the errors from datavalue itself (dv.InvalidDataError)",
}


def new_name(old: str) -> str | None:
    """The module an old dotted name now lives at, or None if it did not move."""
    for prefix in sorted(MOVED, key=len, reverse=True):
        if old == prefix or old.startswith(prefix + "."):
            return MOVED[prefix] + old[len(prefix):]
    return None


class _Alias(importlib.abc.Loader):
    def __init__(self, new: str) -> None:
        self.new = new

    def create_module(self, spec: Any) -> Any:
        hint = HINTS.get(spec.name)
        warnings.warn(
            f"'{spec.name}' moved to '{self.new}'"
            f"{f' ({hint})' if hint else ''}; the old path works for this release only.",
            DeprecationWarning, stacklevel=2)
        return importlib.import_module(self.new)

    def exec_module(self, module: Any) -> None:  # already executed under its new name
        return None


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        new = new_name(name)
        if new is None:
            return None
        return importlib.util.spec_from_loader(name, _Alias(new))


def install() -> None:
    """Put the finder first on ``sys.meta_path`` (once): before the path finder, which would
    otherwise load a second copy of a moved submodule through its package's new folder."""
    if not any(isinstance(f, _Finder) for f in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
