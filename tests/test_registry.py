"""Registry rules: -k-safe ids, clear errors, and the case matrix."""
import itertools

import pytest

from suite import registry
from suite.registry import RegistryError, check_id
from suite.matrix import cases_for, load_builtins
from suite.specs import Case


@pytest.fixture(autouse=True)
def builtins():
    load_builtins()


@pytest.mark.parametrize("kind", ["dataset", "model", "method", "metric"])
def test_no_builtin_id_is_a_substring_of_another_of_its_kind(kind):
    ids = list(registry._TABLES[kind])
    assert ids, kind
    clashes = [(a, b) for a, b in itertools.permutations(ids, 2) if a in b]
    assert clashes == []


def test_check_id_names_the_offender_and_the_fix():
    with pytest.raises(RegistryError, match="'digits' is already registered"):
        check_id("dataset", "digits")
    with pytest.raises(RegistryError, match="'dig' collides with the registered dataset id 'digits'"):
        check_id("dataset", "dig")
    with pytest.raises(RegistryError, match="not allowed"):
        check_id("method", "My-Method")
    check_id("dataset", "digits", replace=True)   # replacing is explicit


def test_cases_for_accuracy_and_ids():
    cases = cases_for("accuracy", "smoke")
    ids = [c.id for c in cases]
    assert "digits-simplecnn" in ids and "shapes-resnet8" in ids
    assert not any(c.model in ("alexnet_rand", "vgg16_rand") for c in cases)   # paper scale only
    assert len(ids) == len(set(ids))
    assert Case("roar", "digits", "simplecnn", "gradient").id == "digits-simplecnn-gradient"
    with pytest.raises(KeyError, match="metric 'nope' is not registered"):
        cases_for("nope", "smoke")
    with pytest.raises(ValueError, match="scale 'huge'"):
        cases_for("accuracy", "huge")


def test_metric_listing_names_every_metric_with_its_case_counts():
    from suite.metrics.__main__ import table
    from suite.registry import METRICS
    from suite.matrix import cases_for

    out = table()
    for name in METRICS:
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [name])
        counts = "/".join(str(len(cases_for(name, s))) for s in ("smoke", "small", "paper"))
        assert line.split()[1] == counts, (name, line)
