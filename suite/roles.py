"""The controls as data: each method's role, and the one policy every metric applies to a role.

A method's role is a field of its ``MethodSpec`` (``role=`` at registration; the built-in controls
are in ``suite.methods.controls``). Every metric reads the policy here instead of deciding for
itself which cases assert what.

======== ========= ==========================================================================
role     method    policy
======== ========= ==========================================================================
method   (any)     must beat the random baseline (``suite.metrics.verdict``); a published
                   failure is an expectation row (``suite.metrics.expectations``): xfail.
baseline random    the baseline itself: never compared with itself. Its case asserts the
                   metric's own sanity check of a random ranking where the metric has one
                   (ROAR / KAR: monotone curve; ROAD: MoRF = LeRF within noise; sanity checks:
                   similarity about 0 at every step).
control  sobel     model-independent (edges of the input): its comparison with random is
                   recorded (score, baseline, beats_baseline), never asserted, since nothing
                   requires a map that ignores the model to beat a random one (Hooker et al.
                   2019, Sec. 4.1 and Table 2: under ROAR Sobel degrades accuracy less than
                   random). The sanity checks assert its calibration: similarity exactly 1.
oracle   oracle    ground truth (the object mask): must beat random, and where the metric
                   defines the wide-margin oracle rule (ROAR, ROAD: ``verdict.ORACLE_RULE``)
                   that too. A failure means the metric is broken, not the oracle. One
                   exception, measured: ROAR's mean fill leaves a hole of the object's shape
                   that the retrained model reads (the leakage Rong et al. 2022 describe;
                   FINDINGS.md), so under ROAR the oracle's mean-fill comparison is recorded
                   and the leakage-free oracle rule (noisy linear fill) is what is asserted.
======== ========= ==========================================================================
"""
from __future__ import annotations

from dataclasses import dataclass

from suite.specs import ROLES


@dataclass(frozen=True)
class Policy:
    role: str
    beats_random_asserted: bool     # is the case's "beats random" verdict an assertion?
    compared_with_random: bool      # is there a comparison at all (not for the baseline itself)?
    text: str


POLICIES: dict[str, Policy] = {
    "method": Policy("method", True, True,
                     "must beat random (an expectation row makes a published failure an xfail)"),
    "baseline": Policy("baseline", False, False,
                       "the random baseline itself: not compared with itself; its case asserts "
                       "the metric's sanity check of a random ranking where there is one"),
    "control": Policy("control", False, True,
                      "model-independent control: its comparison with random is recorded, not "
                      "asserted (sanity checks: its calibration, similarity 1, is asserted)"),
    "oracle": Policy("oracle", True, True,
                     "ground truth: must beat random (and the oracle rule where the metric has "
                     "one); failing means the metric is broken"),
}
assert set(POLICIES) == set(ROLES)


def role(method: str | None) -> str | None:
    """The role of a registered method (None for cases without a method)."""
    if method is None:
        return None
    from suite.registry import METHODS

    if method not in METHODS:
        raise KeyError(f"method {method!r} is not registered; known: {sorted(METHODS)}")
    return METHODS[method].role


def policy(method: str | None) -> Policy | None:
    r = role(method)
    return None if r is None else POLICIES[r]


def must_beat_random(method: str | None) -> bool:
    """Whether a case of ``method`` asserts the beats-random rule (see the module's table)."""
    p = policy(method)
    return bool(p and p.beats_random_asserted)
