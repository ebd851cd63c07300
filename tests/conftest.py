import pytest

pytest_plugins = ["pytester"]


@pytest.fixture
def cleanup():
    """Remove what a test registers, so other tests see the built-in registry."""
    from suite import matrix, registry

    matrix.load_builtins()
    before = {k: set(t) for k, t in registry._TABLES.items()}
    yield
    for kind, table in registry._TABLES.items():
        for name in set(table) - before[kind]:
            registry.unregister(kind, name)
