import zlib

import numpy as np
import pytest

from suite import matrix as _matrix

pytest_plugins = ["pytester"]

# Every built-in registration (datasets, models, methods, metrics) is imported here, before any
# test: a test using pytester gets sys.modules restored at its end, which drops the modules the
# test imported first; the next import of such a module registers its ids again (RegistryError:
# "already registered"), on whichever later test of that process imports it.
_matrix.load_builtins()


@pytest.fixture
def rng(request):
    """The test's own generator, seeded by its module's RNG_SEED (0 without one) and the test's
    name: with one module-wide stream a test's data (and a threshold on its p) depended on which
    tests of the module had run before it in the same process, i.e. on how xdist spread them."""
    base = getattr(request.module, "RNG_SEED", 0)
    return np.random.default_rng([base, zlib.crc32(request.node.name.encode())])


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
