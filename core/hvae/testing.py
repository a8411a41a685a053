"""Helpers for testing hvae plugins in-process, without installing them.

In a plugin's ``conftest.py``::

    from hvae.testing import registered_plugin

    @pytest.fixture
    def my_plugin():
        with registered_plugin(my_plugin_module, name="my-plugin"):
            yield

or use the ``hvae_plugin`` fixture factory exported here.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import pytest

from hvae import plugins


@contextlib.contextmanager
def registered_plugin(plugin: object, name: str) -> Iterator[plugins.Registry]:
    """Register ``plugin`` (a module or object with ``hvae_register_*`` hooks) for the block."""
    plugins.register_plugin(plugin, name)
    try:
        yield plugins.registry()
    finally:
        plugins.unregister_plugin(name)


@pytest.fixture
def hvae_plugin():
    """Fixture: call ``hvae_plugin(obj, name)`` to register a plugin until the test ends."""
    stack = contextlib.ExitStack()

    def register(plugin: object, name: str) -> plugins.Registry:
        return stack.enter_context(registered_plugin(plugin, name))

    with stack:
        yield register
