"""Where algorithms are found, by name: one module each, and nothing else to edit.

    algorithms()                   # {'dpo': DPO, 'expert_iteration': ExpertIteration, 'grpo': GRPO, ...}
    get("dpo")                     # the class rest_em.algorithms.dpo.ALGORITHM
    get("toy", plugins=["tests/rest_em/toy_algorithm.py"])

An algorithm is a module that sets ``ALGORITHM = SomeClass`` (a subclass of
``rest_em.algorithms.base.Algorithm``). Three places are searched:

1. every module of the package ``rest_em/algorithms/`` (the built-in algorithms);
2. the entry-point group ``rest_em.algorithms`` of installed distributions (``name = "pkg.module"``);
3. the run config's ``plugins`` list: ``pkg.module`` or ``path/to/file.py`` each.

This module sits below the config and the algorithms: it imports neither, it looks them up by name when
asked (the way entry points work), so ``rest_em.config`` can take the algorithm names, sections and
warnings from the registry without an import cycle.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
import pkgutil
import sys
from pathlib import Path
from typing import Any, Iterable

logger = logging.getLogger(__name__)

PACKAGE = "rest_em.algorithms"
ENTRY_POINT_GROUP = "rest_em.algorithms"

_found: dict[str, Any] = {}  # name -> algorithm class
_loaded_sources: set[str] = set()  # modules and plugin files already searched
_plugin_names: dict[str, str] = {}  # plugin spec (a resolved file path or a module name) -> the algorithm it adds


class RegistryError(ValueError):
    """An algorithm module or plugin that cannot be loaded, or two algorithms with one name."""


def _add(cls: Any, where: str) -> None:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise RegistryError(f"{where}: ALGORITHM {cls!r} has no `name`")
    other = _found.get(name)
    if other is not None and other is not cls:
        raise RegistryError(f"{where}: algorithm name {name!r} is already taken by {other.__module__}.{other.__qualname__}")
    _found[name] = cls


def _search_module(module_name: str) -> Any:
    if module_name in _loaded_sources:
        return None
    _loaded_sources.add(module_name)
    module = importlib.import_module(module_name)
    cls = getattr(module, "ALGORITHM", None)
    if cls is not None:
        _add(cls, module_name)
    return cls


def _search_file(path: Path) -> None:
    key = str(path.resolve())
    if key in _loaded_sources:
        return
    if not path.is_file():
        raise RegistryError(f"plugin {path}: no such file")
    module_name = f"rest_em_plugin_{path.stem}_{abs(hash(key)) % 10**8}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise RegistryError(f"plugin {path}: not a Python module")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # dataclasses and pickling look classes up through sys.modules
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        sys.modules.pop(module_name, None)
        raise RegistryError(f"plugin {path}: {type(exc).__name__}: {exc}") from exc
    _loaded_sources.add(key)
    cls = getattr(module, "ALGORITHM", None)
    if cls is None:
        raise RegistryError(f"plugin {path}: it sets no module-level `ALGORITHM = <class>`")
    _add(cls, str(path))
    _plugin_names[key] = cls.name


def _builtin() -> None:
    spec = importlib.util.find_spec(PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return
    for info in pkgutil.iter_modules(spec.submodule_search_locations):
        _search_module(f"{PACKAGE}.{info.name}")


def _entry_points() -> None:
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        key = f"entry point {ep.name} = {ep.value}"
        if key in _loaded_sources:
            continue
        _loaded_sources.add(key)
        try:
            target = ep.load()
        except Exception as exc:  # a broken third-party plugin must not stop the built-in algorithms
            logger.warning("%s: cannot be loaded (%s: %s); skipped", key, type(exc).__name__, exc)
            continue
        _add(getattr(target, "ALGORITHM", target), key)


def load_plugins(plugins: Iterable[str] = ()) -> list[str]:
    """Search the built-in package, the entry points and ``plugins`` (each once per process); the names of the
    algorithms that ``plugins`` add."""
    _builtin()
    _entry_points()
    names = []
    for spec in plugins:
        if spec.endswith(".py") or "/" in spec or "\\" in spec:
            path = Path(spec).expanduser()
            _search_file(path)
            names.append(_plugin_names[str(path.resolve())])
        else:
            try:
                cls = _search_module(spec)
            except ModuleNotFoundError as exc:
                raise RegistryError(f"plugin {spec!r}: no such module ({exc})") from None
            if cls is not None:
                _plugin_names[spec] = cls.name
            if spec not in _plugin_names:
                raise RegistryError(f"plugin {spec!r}: it sets no module-level `ALGORITHM = <class>`")
            names.append(_plugin_names[spec])
    return names


def algorithms(plugins: Iterable[str] = ()) -> dict[str, Any]:
    """The algorithms of this package and the installed entry points, plus those that ``plugins`` add: name ->
    class, sorted by name. A plugin loaded for another config in this process is not among them."""
    own = set(load_plugins(plugins))
    others = set(_plugin_names.values()) - own
    return dict(sorted((name, cls) for name, cls in _found.items() if name not in others))


def get(name: str, plugins: Iterable[str] = ()) -> Any:
    """The class of algorithm ``name``; ``KeyError`` naming the choices when there is none."""
    found = algorithms(plugins)
    if name not in found:
        raise KeyError(f"unknown algorithm {name!r}; choose one of {', '.join(found)}")
    return found[name]
