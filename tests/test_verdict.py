"""The shared regression check: the beat-random rule and the expectation table."""
import re
import math

import pytest

from suite.metrics.expectations import EXPECTATIONS, Expectation, expect_failure, expectation_for
from suite.metrics.verdict import beats_random_check, compare_to_random
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
    c = beats_random_check(case, v)
    assert not c.passed and c.name == "beats_random"
    assert re.match(r"intgrad does not beat the random baseline under roar on digits/simplecnn: "
                    r"score 0.61 vs random 0.6", c.message)
    assert beats_random_check(case, compare_to_random([0.3], [0.6], higher_is_better=False)).passed


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


def test_oracle_check_known_answers():
    """ORACLE_RULE: gap to chance closed and absolute advantage, both directions."""
    from suite.metrics.verdict import ORACLE_MIN_ADVANTAGE, ORACLE_MIN_GAP_CLOSED, oracle_check

    assert (ORACLE_MIN_GAP_CLOSED, ORACLE_MIN_ADVANTAGE) == (0.5, 0.05)
    # ROAR-like (lower is better), chance 0.2: random 0.4, oracle 0.25 closes 0.15 / 0.2 = 75%
    c = oracle_check(0.25, 0.4, chance=0.2, higher_is_better=False)
    assert c.advantage == pytest.approx(0.15) and c.gap_closed == pytest.approx(0.75) and c.passes
    # narrow: oracle 0.35 closes 25%
    c = oracle_check(0.35, 0.4, chance=0.2, higher_is_better=False)
    assert c.gap_closed == pytest.approx(0.25) and not c.passes
    # random already near chance: 100% of a 0.02 gap is not a wide margin (advantage < 0.05)
    c = oracle_check(0.2, 0.22, chance=0.2, higher_is_better=False)
    assert c.gap_closed == pytest.approx(1.0) and not c.passes
    # KAR-like (higher is better): random 0.5, oracle 0.9, chance 0.1 -> closes 0.4 / 0.4
    c = oracle_check(0.9, 0.5, chance=0.1, higher_is_better=True)
    assert c.gap_closed == pytest.approx(1.0) and c.passes
    # an oracle worse than random
    assert not oracle_check(0.5, 0.4, chance=0.2, higher_is_better=False).passes
    assert "oracle" in oracle_check(0.25, 0.4, chance=0.2, higher_is_better=False).as_dict()["rule"]
    with pytest.raises(ValueError, match="chance"):
        oracle_check(0.2, 0.4, chance=0.0, higher_is_better=False)
