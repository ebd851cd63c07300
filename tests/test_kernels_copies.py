"""Helper kernels are copied into each kernel file on purpose (numba's on-disk cache only tracks
the cached function's own file, see ../shared/STYLE.md); this keeps the copies identical."""
import inspect

import pytest

from kernels import masking, ranking

HELPERS = ("_sort_keys", "_radix_argsort")


@pytest.mark.parametrize("name", HELPERS)
def test_copied_helper_kernels_are_identical(name):
    def source(mod):
        fn = getattr(mod, name)
        return inspect.getsource(getattr(fn, "py_func", fn))

    reference = source(ranking)
    for mod in (masking,):
        assert source(mod) == reference, f"{mod.__name__}.{name} drifted from kernels.ranking.{name}"
