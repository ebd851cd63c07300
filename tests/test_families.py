"""Run-level statistics (suite.families) and the paired verdict (suite.metrics.verdict), on
hand-made records with known answers."""
import numpy as np
import pytest

from suite import families
from suite.metrics.verdict import paired_verdict, seed_verdict


def case(metric, method, p, score=0.5, dataset="digits", model="simplecnn", outcome="passed"):
    return {"metric": metric, "dataset": dataset, "model": model, "method": method,
            "outcome": outcome, "score": score,
            "details": {"paired": {"p_value": p}} if p is not None else {}}


def test_holm_within_each_family_only_for_claiming_roles():
    roles = {"a": "method", "b": "method", "c": "method", "oracle": "oracle", "random": "baseline",
             "sobel": "control"}
    cases = [case("aopc", "a", 0.01), case("aopc", "b", 0.04), case("aopc", "c", 0.03),
             case("aopc", "oracle", 0.001), case("aopc", "random", 0.5), case("aopc", "sobel", 0.02),
             case("road", "a", 0.01), case("aopc", "a", 0.001, dataset="shapes")]
    families.apply_holm(cases, roles)
    by = {(c["metric"], c["dataset"], c["method"]): c["details"] for c in cases}
    # aopc/digits family: p = (a .01, b .04, c .03, oracle .001), m = 4; Holm by hand:
    # .001*4 = .004; .01*3 = .03; .03*2 = .06; max(.06, .04*1) = .06
    assert by[("aopc", "digits", "oracle")]["paired"]["p_holm"] == pytest.approx(0.004)
    assert by[("aopc", "digits", "a")]["paired"]["p_holm"] == pytest.approx(0.03)
    assert by[("aopc", "digits", "c")]["paired"]["p_holm"] == pytest.approx(0.06)
    assert by[("aopc", "digits", "b")]["paired"]["p_holm"] == pytest.approx(0.06)
    assert by[("aopc", "digits", "a")]["paired"]["family_size"] == 4
    assert by[("aopc", "digits", "oracle")]["beats_random_holm"] is True
    assert by[("aopc", "digits", "a")]["beats_random_holm"] is False    # .03 >= .025
    # the baseline and the control are not in the family; other families are their own
    assert "p_holm" not in by[("aopc", "digits", "random")]["paired"]
    assert "p_holm" not in by[("aopc", "digits", "sobel")]["paired"]
    assert by[("road", "digits", "a")]["paired"]["p_holm"] == pytest.approx(0.01)
    assert by[("aopc", "shapes", "a")]["paired"]["p_holm"] == pytest.approx(0.001)


def test_agreement_orients_each_metric_and_skips_thin_metrics():
    cases = [case("aopc", m, None, s) for m, s in (("a", 3.0), ("b", 2.0), ("c", 1.0))]
    cases += [case("pixelflip", m, None, s) for m, s in (("a", 0.1), ("b", 0.2), ("c", 0.3))]
    cases += [case("road", "a", None, 0.4)]                     # one method only: left out
    out = families.agreement(cases, {"aopc": True, "pixelflip": False, "road": False})
    m = out["digits/simplecnn"]
    assert m["metrics"] == ["aopc", "pixelflip"]
    # aopc: higher is better, pixelflip lower: the same ranking a > b > c, tau = 1
    assert m["tau"][0][1] == pytest.approx(1.0) and m["tau"][1][0] == pytest.approx(1.0)


def test_paired_verdict_constant_difference_and_direction():
    rng = np.random.default_rng(0)
    r = rng.random((1, 40))
    v = paired_verdict(r + 0.1, r, higher_is_better=True)
    assert v.paired["mean_diff"] == pytest.approx(0.1)
    assert v.paired["ci"] == pytest.approx([0.1, 0.1])               # zero width at the value
    assert v.beats and v.n == 40 and v.paired["unit"] == "images"
    assert not paired_verdict(r + 0.1, r, higher_is_better=False).beats   # the wrong direction
    # seeds are noise draws of one model: per image they are averaged before pairing
    two = np.stack([r[0] + 0.3, r[0] - 0.1])
    assert paired_verdict(two, np.stack([r[0], r[0]]), higher_is_better=True).paired[
        "mean_diff"] == pytest.approx(0.1)


def test_seed_verdict_says_plainly_when_there_is_one_seed():
    one = seed_verdict([0.5], [0.6], higher_is_better=False)
    assert one.paired["ci"] == [None, None] and "one retraining seed" in one.paired["note"]
    assert one.beats              # the margin rule: 0.1 > 2% of 0.6
    many = seed_verdict([0.50, 0.52, 0.49], [0.60, 0.61, 0.62], higher_is_better=False)
    assert many.paired["unit"] == "seeds" and many.paired["n"] == 3 and many.beats
    assert many.rule.startswith("beats random when the one-sided p of the paired t-test")
