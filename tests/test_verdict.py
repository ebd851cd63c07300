"""The shared regression check: the beat-random rule and the expectation table."""
import math

import pytest

from suite.metrics.expectations import EXPECTATIONS, Expectation, expect_failure, expectation_for
from suite.metrics.verdict import check_beats_random, compare_to_random
from suite.specs import Case


def test_one_seed_uses_the_relative_margin():
    v = compare_to_random([0.50], [0.60], higher_is_better=False)      # lower is better
    assert v.advantage == pytest.approx(0.10) and v.margin == pytest.approx(0.012)
    assert v.beats and v.score_std is None
    w = compare_to_random([0.595], [0.60], higher_is_better=False)     # 0.005 < 2% of 0.6
    assert not w.beats


def test_several_seeds_must_clear_two_standard_errors():
    s, r = [0.50, 0.60, 0.40], [0.55, 0.65, 0.45]      # mean gap 0.05, std 0.1 each
    v = compare_to_random(s, r, higher_is_better=True, rel_margin=0.0)
    se = math.sqrt(0.01 / 3 + 0.01 / 3)
    assert v.margin == pytest.approx(2 * se) and v.advantage == pytest.approx(-0.05)
    assert not v.beats
    v2 = compare_to_random([0.9, 0.91, 0.89], [0.5, 0.52, 0.48], higher_is_better=True)
    assert v2.beats and v2.score_std == pytest.approx(0.01)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="at least one"):
        compare_to_random([], [0.1], higher_is_better=True)
    with pytest.raises(ValueError, match="non-finite"):
        compare_to_random([float("nan")], [0.1], higher_is_better=True)
    with pytest.raises(ValueError, match="margins"):
        compare_to_random([1], [0], higher_is_better=True, n_sigma=-1)


def test_check_message_names_the_numbers():
    case = Case("roar", "digits", "simplecnn", "intgrad")
    v = compare_to_random([0.61], [0.60], higher_is_better=False)
    with pytest.raises(AssertionError, match=r"intgrad does not beat the random baseline under roar "
                                             r"on digits/simplecnn: score 0.61 vs random 0.6"):
        check_beats_random(case, v)
    check_beats_random(case, compare_to_random([0.3], [0.6], higher_is_better=False))


def test_expectation_table_matches_by_pattern_and_needs_a_source():
    n = len(EXPECTATIONS)
    try:
        e = expect_failure("zzmetric", "gradient", reason="r", source="Paper 2019, Fig. 1",
                           models="simple*")
        assert expectation_for(Case("zzmetric", "digits", "simplecnn", "gradient")) is e
        assert expectation_for(Case("zzmetric", "digits", "resnet8", "gradient")) is None
        assert expectation_for(Case("zzmetric", "digits", "simplecnn", "intgrad")) is None
        assert e.as_dict()["expected"] == "fail"
        with pytest.raises(ValueError, match="needs a source"):
            expect_failure("zzmetric", "x", reason="r", source="")
    finally:
        del EXPECTATIONS[n:]
    assert isinstance(EXPECTATIONS, list) and all(isinstance(x, Expectation) and x.source for x in EXPECTATIONS)
