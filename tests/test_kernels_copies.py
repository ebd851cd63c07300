"""Helper kernels are copied into each kernel file on purpose (numba's on-disk cache only tracks
the cached function's own file, see ../shared/STYLE.md); this keeps the copies identical."""
import inspect

import pytest

from kernels import masking, perturbation, ranking

HELPERS = {"_sort_keys": (masking,), "_radix_argsort": (masking, perturbation)}
HELPERS.update({k: (masking, perturbation) for k in ("_h32", "_tie_base", "_tie_priority", "_sort_run",
                                                     "_break_ties")})


@pytest.mark.parametrize("name", sorted(HELPERS))
def test_copied_helper_kernels_are_identical(name):
    def source(mod):
        fn = getattr(mod, name)
        return inspect.getsource(getattr(fn, "py_func", fn))

    reference = source(ranking)
    for mod in HELPERS[name]:
        assert source(mod) == reference, f"{mod.__name__}.{name} drifted from kernels.ranking.{name}"
