"""The plugin manager and the component registries built from it.

Every component, built-in or not, arrives through the ``hvae`` entry-point group and
the hooks in :mod:`hvae.hookspecs`; the core imports no plugin package.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
from typing import TYPE_CHECKING, Any, Callable, Mapping

import pluggy

from hvae import hookspecs
from hvae.errors import PluginError, UnknownComponentError
from hvae.options import typed_values

if TYPE_CHECKING:  # (a type only: listing plugins does not load torch)
    from hvae.interfaces import Converter

KINDS = ("converters", "encoders", "decoders", "losses")
SINGULAR = {"converters": "converter", "encoders": "encoder", "decoders": "decoder", "losses": "loss"}
ENTRY_POINT_GROUP = "hvae"


@dataclasses.dataclass(frozen=True)
class Registration:
    kind: str  # one of KINDS
    name: str  # what users type, e.g. "drums"
    factory: Any  # the registered class
    plugin: str  # plugin name (entry-point name, or the name given to pm.register)
    distribution: str | None  # the installed distribution that provided it, if any
    version: str | None

    def build(self, *args: Any, **kwargs: Any) -> Any:
        """The component, built by its class. Errors that mean "these values do not fit" (ValueError,
        TypeError, HvaeError, ...) pass through; an AttributeError is a bug in the plugin's own code, and
        becomes a :class:`PluginError` naming the plugin and its distribution."""
        try:
            return self.factory(*args, **kwargs)
        except AttributeError as exc:
            raise PluginError(f"The {SINGULAR[self.kind]} {self.name!r} of plugin {self.plugin!r} "
                              f"({self.distribution or 'in-process'}) failed: AttributeError: {exc}. That is a bug "
                              f"in the plugin: report it to its authors.") from exc


@dataclasses.dataclass(frozen=True)
class PluginFailure:
    plugin: str
    distribution: str | None
    reason: str


class Registry:
    """All components registered by the loaded plugins, by kind and name."""

    def __init__(self, pm: pluggy.PluginManager, distributions: dict[str, tuple[str, str]],
                 failures: list[PluginFailure]):
        self.pm = pm
        self.distributions = dict(distributions)  # plugin name -> (distribution, version)
        self.failures = list(failures)
        self._by_kind: dict[str, dict[str, Registration]] = {kind: {} for kind in KINDS}
        for kind in KINDS:
            caller = getattr(pm.hook, f"hvae_register_{kind}")
            for impl in caller.get_hookimpls():
                dist, version = distributions.get(impl.plugin_name, (None, None))
                register = self._make_register(kind, impl.plugin_name, dist, version)
                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except (Exception, SystemExit) as exc:  # a broken plugin must not take the others down
                    self.failures.append(PluginFailure(impl.plugin_name, dist, f"{kind} hook failed: {exc!r}"))

    def _make_register(self, kind: str, plugin: str, dist: str | None, version: str | None) -> Callable:
        def register(factory: Any, name: str | None = None) -> None:
            if not isinstance(factory, type):  # a typo'd instance or function: skipped, reported by 'hvae plugins'
                self.failures.append(PluginFailure(plugin, dist, f"registered a {SINGULAR[kind]} that is not a class: "
                                                                 f"{_one_line(repr(factory))[:80]}"))
                return
            name = name or getattr(factory, "name", None)
            if not name:
                raise PluginError(f"plugin {plugin!r} registered a {SINGULAR[kind]} without a name: {factory!r}")
            existing = self._by_kind[kind].get(name)
            if existing is not None:
                raise PluginError(
                    f"{SINGULAR[kind]} {name!r} is registered twice: by plugin {existing.plugin!r}"
                    f" ({existing.distribution or 'in-process'}) and by plugin {plugin!r}"
                    f" ({dist or 'in-process'}). Uninstall one of them.")
            self._by_kind[kind][name] = Registration(kind, name, factory, plugin, dist, version)

        return register

    def names(self, kind: str) -> list[str]:
        return sorted(self._by_kind[kind])

    def registrations(self, kind: str) -> list[Registration]:
        return [self._by_kind[kind][n] for n in self.names(kind)]

    def get(self, kind: str, name: str) -> Registration:
        try:
            return self._by_kind[kind][name]
        except KeyError:
            installed = ", ".join(self.names(kind)) or "none"
            raise UnknownComponentError(
                f"Unknown {SINGULAR[kind]} {name!r}. Installed: {installed}. Run 'hvae plugins'.") from None


def _one_line(exc: BaseException | str) -> str:
    """An exception's message (or a text) on one line (pluggy's validation errors span several)."""
    return "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())


def _load_entry_points(pm: pluggy.PluginManager) -> tuple[dict[str, tuple[str, str]], list[PluginFailure]]:
    """Load every ``hvae`` entry point; a plugin that fails to import is recorded, not fatal."""
    distributions: dict[str, tuple[str, str]] = {}
    failures: list[PluginFailure] = []
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist is not None else None
        version = ep.dist.version if ep.dist is not None else None
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            plugin = ep.load()
        except (Exception, SystemExit) as exc:  # a plugin that exits while importing must not end hvae
            failures.append(PluginFailure(ep.name, dist, f"import failed: {type(exc).__name__}: {_one_line(exc)}"))
            continue
        try:
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # e.g. a hook implementation with a wrong signature
            failures.append(PluginFailure(ep.name, dist, f"rejected: {_one_line(exc)}"))
            continue
        distributions[ep.name] = (dist, version)
    return distributions, failures


def _check_pending(pm: pluggy.PluginManager, failures: list[PluginFailure],
                   distributions: dict[str, tuple[str, str]]) -> None:
    """Unregister plugins that implement hooks hvae does not define (a misspelt hook name)."""
    for name, plugin in list(pm.list_name_plugin()):
        for impl_name in dir(plugin):
            if impl_name.startswith("hvae_") and callable(getattr(plugin, impl_name, None)):
                if not hasattr(pm.hook, impl_name) or not hasattr(hookspecs, impl_name):
                    pm.unregister(plugin)
                    dist = distributions.pop(name, (None, None))[0]
                    failures.append(PluginFailure(name, dist, f"implements unknown hook {impl_name!r}"))
                    break


def get_plugin_manager(extra_plugins: dict[str, object] | None = None) -> tuple[pluggy.PluginManager, dict, list]:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(hookspecs)
    distributions, failures = _load_entry_points(pm)
    for name, plugin in (extra_plugins or {}).items():
        try:
            pm.register(plugin, name=name)
        except Exception as exc:  # e.g. a hook implementation with a wrong signature
            failures.append(PluginFailure(name, None, f"rejected: {_one_line(exc)}"))
    _check_pending(pm, failures, distributions)
    return pm, distributions, failures


_extra_plugins: dict[str, object] = {}
_registry: Registry | None = None


def registry() -> Registry:
    """The process-wide registry, built on first use."""
    global _registry
    if _registry is None:
        pm, distributions, failures = get_plugin_manager(_extra_plugins)
        _registry = Registry(pm, distributions, failures)
    return _registry


def make_converter(name: str, options: Mapping[str, Any] | None = None) -> Converter:
    """The registered converter ``name`` built with ``options`` (its Options fields, by the reference's
    names; lists, as JSON gives tuples back, become the tuples the fields hold). Every converter hvae
    uses is built here: from a preset, the command line, a run's configuration or a checkpoint.

    Raises :class:`UnknownComponentError` for a name no plugin registered, and
    :class:`hvae.errors.HvaeError` for an option the converter does not have; a converter's own
    validation errors pass through as it raises them.
    """
    registration = registry().get("converters", name)
    return registration.build(**typed_values(registration.factory.Options, dict(options or {})))


def register_plugin(plugin: object, name: str) -> None:
    """Register an in-process plugin (tests, notebooks). Rebuilds the registry."""
    global _registry
    _extra_plugins[name] = plugin
    _registry = None


def unregister_plugin(name: str) -> None:
    global _registry
    _extra_plugins.pop(name, None)
    _registry = None
