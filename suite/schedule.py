"""How ``pytest -n N`` spreads the cases over its workers: by scope, heaviest scope first.

pytest-xdist's default (``--dist load``) hands the tests out in collection order, a few at a
time, so the cases of one model land on several workers, and a worker that needs a model (or
maps, or the random control's retrainings) that another worker is building waits on the cache's
lock, idle. Under ``-n`` with that default the plugin replaces the scheduler
(``pytest_xdist_make_scheduler``) by :class:`CaseScheduling`: pytest-xdist's own scope scheduler
(a scope runs whole on one worker; a worker is handed the next scope when it has two tests or
fewer left), where the scope of a case is its case function, dataset and model
(:func:`scope_of`: the cases of one metric on one model share their artifacts), and a test that
is not parametrized is a scope of its own, as under ``load``. When a worker crashes, the case it
was running is reported as crashed and not run again, and the rest of its scopes go back to the
front of the queue (for another worker or its replacement). An explicit ``--dist`` (loadscope,
loadfile, worksteal, ...) is left to pytest-xdist.

Scopes are handed out in collection order, and every worker sorts the cases it collected the
same way (:func:`order`; the collections must agree), heaviest scope first (longest processing
time first, so that no long scope starts last and runs alone): a scope's weight is the training
its cases' plan holds (``suite.plan``, without timing anything: base trainings, ROAR/KAR
retrainings, ROAD's retrainings), in FLOPs, i.e. the forward + backward FLOPs of one image
(``suite.plan.step_flops``) x training images x epochs; an artifact several scopes share counts
for the first of them in collection order. Scopes without training follow, largest first. Tests
that are not cases keep their place before the cases.

The order decides only where and when a case runs, never its numbers: every result is keyed by
everything it depends on, and ``--threads`` fixes the torch threads of every worker.
"""
from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from typing import Any, Sequence

log = logging.getLogger("saliencybench")

#: the workerinput flag that tells a worker the controller schedules by scope (and so to sort)
WORKER_FLAG = "sb_scope_schedule"


def scope_of(nodeid: str) -> str:
    """The scheduling scope of a test: ``path::function[dataset-model`` for a parametrized test
    (a case's id is ``dataset-model[-method]``, ``suite.specs.Case.id``), else the node id."""
    head, sep, params = nodeid.partition("[")
    if not sep:
        return nodeid
    return f"{head}[{'-'.join(params.rstrip(']').split('-')[:2])}"


def training_work(cases: Sequence[tuple[str, Any]], ctx) -> Counter:
    """scope -> FLOPs of the training (base models, retrainings) the plan of ``cases`` holds,
    cached or not: each node's training images x epochs (``Node.image_epochs``) x its model's
    forward + backward FLOPs per image, counted for the scope of the first case that needs it."""
    from suite.plan import _Planner, step_flops

    planner = _Planner(ctx, estimate=False, probe=False)   # nothing timed, no retraining probed
    for nodeid, case in cases:
        planner.case(nodeid, case)
    flops: dict[tuple, float] = {}
    work: Counter = Counter()
    for node in planner.plan.nodes.values():
        if not node.image_epochs or not node.cases:
            continue
        ds = planner.dataset(node.task["dataset"], node.task["model"])   # loaded once, memoised
        k = (node.task["model"], ds.num_classes, tuple(ds.in_shape))
        if k not in flops:
            flops[k] = step_flops(*k)[1]
        work[scope_of(node.cases[0])] += flops[k] * node.image_epochs
    return work


def order(items: list, ctx) -> list:
    """``items`` with the cases sorted heaviest scope first (see the module's docstring); a
    stable sort, so the cases of a scope keep their order and ties keep collection order."""
    from suite.plan import items_cases

    cases = items_cases(items)
    if not cases:
        return list(items)
    try:
        work = training_work(cases, ctx)
    except Exception as err:  # noqa: BLE001 - the order is an optimisation; never fail a run on it
        log.warning("scheduling by scope without training weights (the plan failed: %s: %s)",
                    type(err).__name__, err)
        work = Counter()
    case_ids = {nodeid for nodeid, _ in cases}
    size = Counter(scope_of(i.nodeid) for i in items if i.nodeid in case_ids)
    first: dict[str, int] = {}
    for n, item in enumerate(items):
        first.setdefault(scope_of(item.nodeid), n)

    def key(pair):
        n, item = pair
        if item.nodeid not in case_ids:
            return (0, 0.0, 0, n, n)
        s = scope_of(item.nodeid)
        return (1, -work[s], -size[s], first[s], n)

    return [item for _, item in sorted(enumerate(items), key=key)]


def make_scheduler(config, log_=None):
    """pytest-xdist's scope scheduler with :func:`scope_of` as the scope, scopes in collection
    order (the workers sorted them: :func:`order`)."""
    from xdist.scheduler import LoadScopeScheduling

    class CaseScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

        def _reschedule(self, node) -> None:
            # a worker runs a test only once it holds the next one or is shutting down: top it up
            # past two tests while there is work, shut it down (it then runs what it holds) when
            # there is none. (The parent hands out one scope per call, which can leave a fresh
            # worker holding one test and waiting, e.g. a replacement for a crashed one.)
            if node.shutting_down:
                return
            while self.workqueue and self._pending_of(self.assigned_work[node]) <= 2:
                self._assign_work_unit(node)
            if not self.workqueue:
                node.shutdown()

        def remove_node(self, node):
            # a crashed worker: the test it was running is reported as crashed (by pytest-xdist's
            # session) and not run again; the rest of its scopes go back to the front of the
            # queue. (The parent re-queues the crashing test too, and every replacement worker
            # crashes on it in turn.)
            workload = self.assigned_work.pop(node)
            pending = [(scope, nodeid) for scope, unit in workload.items()
                       for nodeid, done in unit.items() if not done]
            if not pending:
                return None
            scope, crashitem = pending[0]
            workload[scope][crashitem] = True
            queue = OrderedDict((s, u) for s, u in workload.items() if not all(u.values()))
            queue.update(self.workqueue)
            self.workqueue = queue
            for other in list(self.assigned_work):
                self._reschedule(other)
            return crashitem

        def schedule(self) -> None:
            # LoadScopeScheduling sorts the scopes by test count unless told not to; the workers
            # already put them in the order wanted
            option = self.config.option
            before = getattr(option, "loadscopereorder", False)
            option.loadscopereorder = False
            try:
                super().schedule()
            finally:
                option.loadscopereorder = before

    return CaseScheduling(config, log_)


__all__ = ["WORKER_FLAG", "make_scheduler", "order", "scope_of", "training_work"]
