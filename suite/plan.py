"""The build plan of a selection: every artifact its cases need, before any case runs.

``build_plan(cases, ctx)`` walks the collected cases and lists, for each, the artifacts the case's
fixtures and metric fetch from the cache, computed with the same spec functions they use
(``suite.artifacts.trained_model_artifact``, ``suite.methods.extract.attribution_artifact``, and
for retrained models ``suite.metrics.roar.evaluate`` / ``road.evaluate`` run against a probing
cache that answers from the cache and stops at the first artifact that is not there). A node is
one build: its kind (``models``: a base training, ``attributions``: an extraction pass over one
split, ``roar``: a ROAR/KAR retraining, ``road``: the oracle check's retrainings of one method,
built together), artifact key (None while it derives from an artifact not yet built: a retrained
model's key holds a fingerprint of the maps), dependencies, estimated cost, cached or not, and the
cases that need it. Identical builds needed by several cases (the random control's retrainings,
a shared base model) are one node: nodes are deduplicated by artifact key, or by their build
recipe while the key is pending.

Planned metrics: accuracy (the training), roar and kar (training, extraction, retraining; the
oracle's ROAD check). Every other metric plans its base training only (one per seed for
``suite.seeds.BASE_SEED_METRICS``, the perturbation metrics that train a base model per
seed, one for the others); its own result artifacts
(curves, sanity results) are listed as not planned. ``--plan`` prints the plan and exits;
``--executor ray`` (``suite.executor``) builds the uncached nodes on a Ray cluster.

Estimated cost, per node, from measured unit costs: the last recorded build of the same artifact
(same key, else same kind and name) in the cache's builds.log; otherwise measured now. A small
model (a training step under ``TIMED_MAX_STEP_FLOPS`` per image: the suite's own) is timed: one
epoch of its recipe on up to 512 training images (seconds per image-epoch, times epochs and
training images), and the method on 4 images of the split with an untrained model (seconds per
image, times images). A heavy one (torchvision's) is not trained while planning: its cost is its
FLOP count (``step_flops``, on meta tensors) over the device's training FLOP/s, measured once on
``FLOP_REFERENCE``, and a method's cost on it is the passes per image the method makes on the
cheap ``ATTR_PROXY`` times the heavy model's FLOPs. The plan prints every unit cost it used.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

log = logging.getLogger("saliencybench")

#: what each kind is called in the plan's table
KIND_LABELS = {"models": "trainings", "attributions": "attribution passes",
               "roar": "retrainings (ROAR/KAR)", "road": "retrainings (ROAD oracle check)"}
KINDS = tuple(KIND_LABELS)
#: metrics whose every artifact is planned (the others: the base training only)
PLANNED_METRICS = ("accuracy", "roar", "kar")
#: models with fewer parameters than this share a GPU (a fraction of one per Ray task)
SMALL_MODEL_PARAMS = 5_000_000


@dataclass
class Node:
    """One build: ``task`` says what to build (JSON-safe, ``build_node`` runs it)."""

    id: str
    kind: str
    names: list[str]                   # the artifact names it writes (road: several)
    task: dict
    deps: list[str] = field(default_factory=list)
    key: str | None = None
    cached: bool = False
    cost_s: float | None = None
    cost_from: str = ""                # "builds.log", "measured", "" (not estimated)
    cases: list[str] = field(default_factory=list)
    params: int = 0                    # the architecture's parameter count (GPU share)
    image_epochs: int = 0              # training images x epochs of its trainings (0: no training)

    @property
    def label(self) -> str:
        return f"{self.kind}/{self.names[0]}" + (f" (+{len(self.names) - 1})" if len(self.names) > 1 else "")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Plan:
    nodes: dict[str, Node] = field(default_factory=dict)     # insertion order = dependency order
    cases: int = 0
    skipped: dict[str, str] = field(default_factory=dict)    # case id -> reason (nothing built)
    unplanned: dict[str, int] = field(default_factory=dict)  # metric -> cases with unplanned parts
    device: str = "cpu"
    unit_costs: dict[str, str] = field(default_factory=dict)

    def add(self, node: Node, case: str | None) -> Node:
        have = self.nodes.get(node.id)
        if have is None:
            self.nodes[node.id] = have = node
        if case and case not in have.cases:
            have.cases.append(case)
        return have

    def counts(self) -> dict[str, dict[str, int]]:
        """kind -> {"needed", "cached", "build"}: artifacts, not nodes (a road node is several)."""
        out = {k: {"needed": 0, "cached": 0, "build": 0} for k in KINDS}
        for n in self.nodes.values():
            c = out.setdefault(n.kind, {"needed": 0, "cached": 0, "build": 0})
            c["needed"] += len(n.names)
            c["cached" if n.cached else "build"] += len(n.names)
        return out

    def to_build(self) -> list[Node]:
        return [n for n in self.nodes.values() if not n.cached]

    def estimate_s(self) -> float:
        return sum(n.cost_s or 0.0 for n in self.to_build())

    def lines(self, verbose: bool = False) -> list[str]:
        counts = self.counts()
        out = [f"saliencybench plan: {self.cases} case(s), {len(self.skipped)} skipped before "
               f"building anything, on {self.device}"]
        out.append(f"  {'':32s}{'needed':>8s}{'cached':>8s}{'to build':>10s}{'est. time':>12s}")
        for kind in KINDS:
            c = counts[kind]
            secs = sum(n.cost_s or 0.0 for n in self.to_build() if n.kind == kind)
            out.append(f"  {KIND_LABELS[kind]:32s}{c['needed']:8d}{c['cached']:8d}{c['build']:10d}"
                       f"{_duration(secs):>12s}")
        out.append(f"  estimated build time: {_duration(self.estimate_s())} on {self.device}, one "
                   "build after another (Ray: divide by the parallel tasks, at best)")
        if self.unit_costs:
            out.append("  unit costs: " + "; ".join(f"{k} {v}" for k, v in sorted(self.unit_costs.items())))
        for metric, n in sorted(self.unplanned.items()):
            out.append(f"  not planned: {metric} ({n} case(s)): its own result artifacts (only its "
                       "base training is in the plan)")
        for cid, why in list(self.skipped.items())[:5 if not verbose else None]:
            out.append(f"  skipped: {cid}: {why}")
        if len(self.skipped) > 5 and not verbose:
            out.append(f"  ... {len(self.skipped) - 5} more skipped (-v lists them)")
        if verbose:
            for n in self.nodes.values():
                state = "cached" if n.cached else f"build ~{_duration(n.cost_s or 0)} ({n.cost_from})"
                out.append(f"  {n.label:70s} key {n.key or 'pending':20s} {state}"
                           + (f" after {len(n.deps)}" if n.deps else ""))
        out.append("plan: to build: " + " ".join(f"{k}={counts[k]['build']}" for k in KINDS))
        return out


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.1f}h"


# -- building the plan ------------------------------------------------------------------------

class _Miss(Exception):
    def __init__(self, kind: str, name: str, key: str):
        super().__init__(f"{kind}/{name}-{key} is not cached")
        self.kind, self.name, self.key = kind, name, key


class _ProbeCache:
    """An ``ArtifactCache`` stand-in that loads what the cache holds and raises ``_Miss`` (with
    the key) at the first artifact it does not: running a metric's own code against it yields
    the keys of its artifacts without building any."""

    def __init__(self, cache):
        self._cache = cache
        self.root = cache.root
        self.keys: list[tuple[str, str]] = []

    def fetch(self, kind, name, spec, build, codec, *, info=None):
        key, meta = self._cache.lookup(kind, name, spec, codec)
        self.keys.append((kind, key))
        if meta is None:
            raise _Miss(kind, name, key)
        return self._cache.fetch(kind, name, spec, build, codec, info=info)

    def __getattr__(self, attr):
        return getattr(self._cache, attr)


def _probe_ctx(ctx):
    p = dataclasses.replace(ctx)
    p._cache = _ProbeCache(ctx.cache)
    return p


def _probe(ctx, fn, kind: str) -> tuple[bool, str | None]:
    """(cached, key of the last ``kind`` artifact fetched) of running ``fn(probe_ctx)``: the
    artifact's own code, against the probing cache."""
    p = _probe_ctx(ctx)
    try:
        fn(p)
        cached = True
    except _Miss:
        cached = False
    keys = [k for kd, k in p._cache.keys if kd == kind]
    return cached, keys[-1] if keys else None


class _Planner:
    def __init__(self, ctx, *, estimate: bool = True, probe: bool = True):
        from suite.matrix import load_builtins

        load_builtins()
        self.ctx = ctx
        self.plan = Plan(device=ctx.device)
        self.estimate = estimate
        self.probe = probe           # False: retrainings are not looked up (never "cached")
        self._data: dict[tuple[str, str], Any] = {}
        self._history = _history(ctx.cache)
        self._rates: dict[tuple, Any] = {}
        self._ids: dict[tuple, str] = {}       # (what, ...) -> node id, for repeated lookups
        self._fps: dict[tuple, dict] = {}      # (dataset object, split) -> its tensors' hashes

    # datasets and models, loaded once
    def dataset(self, dataset: str, model: str):
        k = (dataset, model)
        if k not in self._data:
            from suite.checkpoints import load_for
            from suite.data import DatasetUnavailable
            from suite.models.pretrained import WeightsUnavailable

            try:
                self._data[k] = load_for(dataset, model, self.ctx)
            except (DatasetUnavailable, WeightsUnavailable) as err:
                self._data[k] = str(err).splitlines()[0] if str(err) else type(err).__name__
        return self._data[k]

    def case(self, nodeid: str, case) -> None:
        from suite.seeds import trains_base_per_seed
        from suite.checkpoints import is_given
        from suite.metrics import roar
        from suite.training import recipe

        self.plan.cases += 1
        if case.metric in ("roar", "kar") and roar.skip_reason(case):
            self.plan.skipped[case.id + f" ({case.metric})"] = roar.skip_reason(case)
            return
        ds = self.dataset(case.dataset, case.model)
        if isinstance(ds, str):
            self.plan.skipped[case.id + f" ({case.metric})"] = ds
            return
        if case.metric not in PLANNED_METRICS:
            self.plan.unplanned[case.metric] = self.plan.unplanned.get(case.metric, 0) + 1
        if is_given(case.model):
            model_node = None       # pretrained / --checkpoint: loaded, never trained
            if case.metric in ("roar", "kar"):     # its maps and retrainings: built by the case
                key = f"{case.metric} (pretrained / --checkpoint models)"
                self.plan.unplanned[key] = self.plan.unplanned.get(key, 0) + 1
        else:
            reason = recipe(case.dataset, case.model, self.ctx.scale).unsupported
            if reason:
                self.plan.skipped[case.id + f" ({case.metric})"] = reason
                return
            model_node = self.model(ds, case.model, nodeid)
            if trains_base_per_seed(case.metric, case.model):   # a base model per seed
                for s in self.ctx.seeds[1:]:
                    self.model(ds, case.model, nodeid, seed=s)
        if case.metric in ("roar", "kar") and model_node is not None:
            mode = roar.MODES[case.metric]
            for method in dict.fromkeys([case.method, "random"]):
                attrs = [self.attributions(ds, case.model, method, split, model_node, nodeid)
                         for split in ("train", "test")]
                for t in roar.FRACTIONS[self.ctx.scale]:
                    for s in self.ctx.seeds:
                        self.retraining(ds, case.model, method, mode, t, s, model_node, attrs, nodeid)
            if case.method == "oracle" and mode == "remove":   # roar._oracle_check's ROAD retrainings
                for method in ("oracle", "random"):
                    attrs = [self.attributions(ds, case.model, method, split, model_node, nodeid)
                             for split in ("train", "test")]
                    self.road(ds, case.model, method, model_node, attrs, nodeid)

    def model(self, ds, model: str, nodeid: str, seed: int | None = None) -> Node:
        from suite.artifacts import trained_model_artifact
        from suite.cache import TORCH

        seed = self.ctx.seeds[0] if seed is None else seed
        memo = ("model", id(ds), model, seed)      # the key is computed once per model
        if memo in self._ids:
            return self.plan.add(self.plan.nodes[self._ids[memo]], nodeid)
        kind, name, spec = trained_model_artifact(self.ctx, ds, model, seed)
        key, meta = self.ctx.cache.lookup(kind, name, spec, TORCH)
        node = Node(f"models:{key}", kind, [name],
                    {"op": "train", "dataset": ds.name, "model": model, "seed": seed},
                    key=key, cached=meta is not None)
        if node.id not in self.plan.nodes:
            from suite.training import recipe

            node.params = param_count(model, ds.num_classes, tuple(ds.in_shape))
            rec = recipe(ds.name, model, self.ctx.scale).train
            node.image_epochs = rec.epochs * len(ds.x_train)
            if not node.cached:
                self._cost(node, lambda: node.image_epochs * self._train_rate(model, ds, rec))
        node = self.plan.add(node, nodeid)
        self._ids[memo] = node.id
        return node

    def attributions(self, ds, model: str, method: str, split: str, model_node: Node,
                     nodeid: str) -> Node:
        from suite.cache import NPZ
        from suite.methods import method_params
        from suite.methods.extract import attribution_artifact

        memo = ("attributions", id(ds), model_node.id, method, split)   # a split hashed once
        if memo in self._ids:
            return self.plan.add(self.plan.nodes[self._ids[memo]], nodeid)
        x, y, masks = ds.split(split)   # as suite.metrics.roar.attributions fetches them
        name, spec = attribution_artifact(model_key=model_node.key, model_name=model, method_name=method,
                                          x=x, split=split, labels=y, masks=masks,
                                          target="predicted", seed=self.ctx.seeds[0],
                                          params=method_params(method, self.ctx.scale),
                                          fingerprints=self._fps.setdefault((id(ds), split), {}))
        key, meta = self.ctx.cache.lookup("attributions", name, spec, NPZ)
        node = Node(f"attributions:{key}", "attributions", [name],
                    {"op": "extract", "dataset": ds.name, "model": model, "method": method,
                     "split": split}, deps=[model_node.id], key=key, cached=meta is not None,
                    params=model_node.params)
        if node.id not in self.plan.nodes and not node.cached:
            self._cost(node, lambda: len(x) * self._attr_rate(ds, model, method, split))
        node = self.plan.add(node, nodeid)
        self._ids[memo] = node.id
        return node

    def retraining(self, ds, model: str, method: str, mode: str, t: float, seed: int,
                   model_node: Node, attrs: list[Node], nodeid: str) -> Node:
        from suite.metrics import roar

        task = {"op": "retrain", "dataset": ds.name, "model": model, "method": method,
                "mode": mode, "fraction": t, "seed": seed}
        name = f"{ds.name}-{model}-{method}-{mode}-pixel-t{t:g}-s{seed}"
        logical = f"roar:{model_node.key}:" + json.dumps(task, sort_keys=True)
        if logical in self.plan.nodes:
            return self.plan.add(self.plan.nodes[logical], nodeid)
        key, cached = None, False
        if self.probe and model_node.cached and all(a.cached for a in attrs):
            def run(ctx):
                from suite.artifacts import trained_model

                tm = trained_model(ctx, ds, model, ctx.seeds[0])
                roar.evaluate(ctx, ds, tm, method, mode=mode, fractions=(t,), seeds=(seed,))

            cached, key = _probe(self.ctx, run, "roar")
        spec = roar.retrain_spec(ds.name, model, self.ctx.scale)
        node = Node(logical, "roar", [name], task, deps=[model_node.id] + [a.id for a in attrs],
                    key=key, cached=cached, params=model_node.params,
                    image_epochs=spec.epochs * len(ds.x_train))
        if not cached:
            self._cost(node, lambda: node.image_epochs * self._train_rate(model, ds, spec))
        return self.plan.add(node, nodeid)

    def road(self, ds, model: str, method: str, model_node: Node, attrs: list[Node],
             nodeid: str) -> Node:
        from suite.metrics import road, roar

        fractions, seeds = roar.FRACTIONS[self.ctx.scale], self.ctx.seeds
        task = {"op": "road", "dataset": ds.name, "model": model, "method": method,
                "fractions": list(fractions), "seeds": list(seeds)}
        logical = f"road:{model_node.key}:" + json.dumps(task, sort_keys=True)
        if logical in self.plan.nodes:
            return self.plan.add(self.plan.nodes[logical], nodeid)
        names = [f"{ds.name}-{model}-{method}-morf-linear-t{t:g}-s{s}" for t in fractions for s in seeds]
        cached = False
        if self.probe and model_node.cached and all(a.cached for a in attrs):
            def run(ctx):
                from suite.artifacts import trained_model

                tm = trained_model(ctx, ds, model, ctx.seeds[0])
                road.evaluate(ctx, ds, tm, method, order="morf", fractions=fractions, seeds=seeds,
                              retrain=True)

            cached, _ = _probe(self.ctx, run, "road")
        spec = roar.retrain_spec(ds.name, model, self.ctx.scale)
        node = Node(logical, "road", names, task, deps=[model_node.id] + [a.id for a in attrs],
                    cached=cached, params=model_node.params,
                    image_epochs=len(names) * spec.epochs * len(ds.x_train))
        if not cached:
            self._cost(node, lambda: node.image_epochs * self._train_rate(model, ds, spec))
        return self.plan.add(node, nodeid)

    # -- costs ----------------------------------------------------------------------------------

    def _cost(self, node: Node, measure) -> None:
        h = self._history
        if node.key and ("key", node.key) in h:
            node.cost_s, node.cost_from = h[("key", node.key)], "builds.log"
        elif all(("name", node.kind, n) in h for n in node.names):
            node.cost_s = sum(h[("name", node.kind, n)] for n in node.names)
            node.cost_from = "builds.log"
        elif node.kind in ("roar", "road") and (node.kind, node.task["dataset"], node.task["model"]) in h:
            # another retraining of the same architecture on the same data: the same recipe
            node.cost_s = len(node.names) * h[(node.kind, node.task["dataset"], node.task["model"])]
            node.cost_from = "builds.log (a retraining of the same model)"
        elif self.estimate:
            node.cost_s, node.cost_from = float(measure()), "measured"

    def _train_rate(self, model: str, ds, spec) -> float:
        """Seconds per training image and epoch.

        A model whose training step costs at most ``TIMED_MAX_STEP_FLOPS`` per image (the
        suite's own small models) is timed: one epoch of the recipe (``suite.training.train``,
        with its evaluation) on up to 512 training images. A heavier one (the torchvision
        architectures) would take minutes to time on a CPU, so its cost is its FLOP count
        (``step_flops``: forward + backward, counted on meta tensors, nothing computed) over the
        device's measured training throughput (``_flop_rate``)."""
        k = ("train", model, ds.name, tuple(ds.in_shape), ds.num_classes, spec.batch_size)
        if k not in self._rates:
            flops = self._flops(model, ds)
            if flops is not None and flops[1] > TIMED_MAX_STEP_FLOPS:
                self._rates[k] = flops[1] / self._flop_rate()
                self.plan.unit_costs[f"train {model} on {ds.name}"] = (
                    f"{1 / self._rates[k]:.0f} img/s ({flops[1] / 1e9:.2f} GFLOP/img "
                    f"at {self._flop_rate() / 1e9:.1f} GFLOP/s)")
                return self._rates[k]
            from dataclasses import replace

            from suite.models import build_model
            from suite.training import torch_threads, train, uses_channels_last

            n, m = min(512, len(ds.x_train)), min(256, len(ds.x_test))
            net = build_model(model, ds.num_classes, ds.in_shape, 0)
            with torch_threads(self.ctx.threads):
                t0 = time.perf_counter()
                train(replace(spec, epochs=1), net.to(self.ctx.device), ds.x_train[:n],
                      ds.y_train[:n], x_test=ds.x_test[:m], y_test=ds.y_test[:m],
                      device=self.ctx.device, seed=0, label="plan: unit cost",
                      channels_last=uses_channels_last(net))   # as fit_cached trains it
                _sync(self.ctx.device)
            self._rates[k] = (time.perf_counter() - t0) / n
            self.plan.unit_costs[f"train {model} on {ds.name}"] = \
                f"{1 / self._rates[k]:.0f} img/s"
        return self._rates[k]

    def _flops(self, model: str, ds) -> tuple[float, float] | None:
        k = ("flops", model, tuple(ds.in_shape), ds.num_classes)
        if k not in self._rates:
            try:
                self._rates[k] = step_flops(model, ds.num_classes, tuple(ds.in_shape))
            except Exception as err:     # a model meta tensors cannot run: timed instead
                log.debug("plan: no FLOP count for %s: %s", model, err)
                self._rates[k] = None
        return self._rates[k]

    def _flop_rate(self) -> float:
        """The device's training throughput in FLOP/s: ``FLOP_REFERENCE`` (the suite's ResNet-8 on
        3x32x32, batch 64) timed over 3 steps after a warm-up one, under the run's threads. The
        small reference underestimates what a large model reaches on the same device, so the
        heavy models' estimates err long."""
        if "flop_rate" not in self._rates:
            import torch
            import torch.nn.functional as F

            from suite.models import build_model
            from suite.training import torch_threads

            name, shape, classes, batch = FLOP_REFERENCE
            dev = self.ctx.device
            # in channels_last, as fit_cached trains every model with a convolution
            net = build_model(name, classes, shape, 0).to(dev).train()
            net.to(memory_format=torch.channels_last)
            opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
            g = torch.Generator().manual_seed(0)
            x = torch.rand((batch, *shape), generator=g).to(dev)
            x = x.contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, classes, (batch,), generator=g).to(dev)

            def step():
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(net(x), y).backward()
                opt.step()

            with torch_threads(self.ctx.threads):
                step()
                _sync(dev)
                t0 = time.perf_counter()
                for _ in range(3):
                    step()
                _sync(dev)
                secs = (time.perf_counter() - t0) / (3 * batch)
            self._rates["flop_rate"] = step_flops(name, classes, shape)[1] / secs
        return self._rates["flop_rate"]

    def _attr_rate(self, ds, model: str, method: str, split: str) -> float:
        """Seconds per image of ``method`` on ``model``: the model passes the method makes per
        image (``_passes``: counted on one image with the cheap ``ATTR_PROXY`` of the same input
        shape, or on the model itself where the method does not apply to the proxy), times the
        model's FLOPs per pass (``step_flops``: a pass with gradients costs a training step's
        forward + backward, one without a forward), over the FLOP/s the model reaches when it
        trains (``_model_rate``). Where no FLOP count exists, 4 images are timed."""
        k = ("attr", model, tuple(ds.in_shape), ds.num_classes, method)
        if k not in self._rates:
            flops = self._flops(model, ds)
            proxy = ATTR_PROXY if self._proxy_ok(method, ds) else model
            if flops is None:
                secs, passes = self._time_method(ds, model, method, split, n_images=4)
                how = "timed on 4 images"
            else:
                passes = self._passes(ds, proxy, method, split)
                fwd, step = flops
                secs = (passes[0] * step + passes[1] * fwd) / self._model_rate(model, ds)
                how = f"{passes[0]:g}+{passes[1]:g} passes/img counted on {proxy}"
            self._rates[k] = secs
            rate = "no model pass" if secs <= 0 else f"{1 / secs:.0f} img/s"
            self.plan.unit_costs[f"{method} on {model}"] = f"{rate} ({how})"
        return self._rates[k]

    def _passes(self, ds, model: str, method: str, split: str) -> tuple[float, float]:
        k = ("passes", model, tuple(ds.in_shape), ds.num_classes, method)
        if k not in self._rates:
            self._rates[k] = self._time_method(ds, model, method, split, n_images=1)[1]
        return self._rates[k]

    def _model_rate(self, model: str, ds) -> float:
        """FLOP/s ``model`` reaches on the device: its timed training (small models), else the
        device's measured training FLOP/s (``_flop_rate``)."""
        from suite.training import recipe

        flops = self._flops(model, ds)
        rec = recipe(ds.name, model, self.ctx.scale).train
        secs = self._train_rate(model, ds, rec)      # seconds per training image
        return flops[1] / max(secs, 1e-12)

    def _proxy_ok(self, method: str, ds) -> bool:
        from suite.matrix import method_applies
        from suite.registry import DATASETS, METHODS, MODELS

        try:
            return method_applies(METHODS[method], MODELS[ATTR_PROXY], DATASETS[ds.name]) is None
        except KeyError:
            return False

    def _time_method(self, ds, model: str, method: str, split: str, *, n_images: int):
        """(seconds per image, (gradient passes, forward-only passes) per image) of ``method`` on
        ``n_images`` images of ``split`` with an untrained ``model``: the passes counted by a
        forward hook (the batch size of every forward, split by whether autograd was on)."""
        import torch

        from suite.methods import extract, method_params
        from suite.models import build_model
        from suite.training import torch_threads

        x, y, masks = ds.split(split)
        net = build_model(model, ds.num_classes, ds.in_shape, 0).eval()
        for p in net.parameters():
            p.requires_grad_(False)
        count = [0, 0]

        def hook(_mod, args):
            if args and isinstance(args[0], torch.Tensor):
                count[0 if torch.is_grad_enabled() else 1] += int(args[0].shape[0])

        handle = net.register_forward_pre_hook(hook)
        n = min(n_images, len(x))
        try:
            with torch_threads(self.ctx.threads):
                t0 = time.perf_counter()
                extract(net, model, method, x[:n], labels=y[:n],
                        masks=None if masks is None else masks[:n], device=self.ctx.device,
                        seed=self.ctx.seeds[0], params=method_params(method, self.ctx.scale),
                        batch_size=n)
                secs = (time.perf_counter() - t0) / n
        finally:
            handle.remove()
        return secs, (count[0] / n, count[1] / n)


#: a model whose training step costs more FLOPs per image than this is costed from its FLOP
#: count, not timed (the suite's small models: 2-25 MFLOP; torchvision's: 0.5 GFLOP and up)
TIMED_MAX_STEP_FLOPS = 2e8
#: the model timed to measure the device's training FLOP/s: (name, input shape, classes, batch)
FLOP_REFERENCE = ("resnet8", (3, 32, 32), 10, 64)
#: the cheap model a heavy model's attribution passes are counted on
ATTR_PROXY = "simplecnn"


def _meta_model(model: str, num_classes: int, in_shape: tuple[int, int, int]):
    """``model`` built on the meta device: shapes only, no weights allocated or initialised."""
    import torch

    from suite.matrix import load_builtins
    from suite.registry import MODELS

    load_builtins()
    with torch.device("meta"):
        return MODELS[model].factory(num_classes, tuple(in_shape))


def param_count(model: str, num_classes: int, in_shape: tuple[int, int, int]) -> int:
    """The parameter count of ``model`` (built on the meta device)."""
    return sum(p.numel() for p in _meta_model(model, num_classes, in_shape).parameters())


def step_flops(model: str, num_classes: int, in_shape: tuple[int, int, int]) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image of one training step of ``model``, counted by
    ``torch.utils.flop_counter.FlopCounterMode`` on meta tensors: no weights are allocated and
    nothing is computed (matmuls and convolutions only, which dominate)."""
    import torch
    import torch.nn.functional as F
    from torch.utils.flop_counter import FlopCounterMode

    net = _meta_model(model, num_classes, in_shape).train()
    x = torch.zeros((2, *in_shape), device="meta")
    y = torch.zeros(2, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        out = net(x)
        out = out[0] if isinstance(out, (tuple, list)) else getattr(out, "logits", out)
        fwd = counter.get_total_flops()
        F.cross_entropy(out, y).backward()
        total = counter.get_total_flops()
    return fwd / 2, total / 2


def _sync(device) -> None:
    import torch

    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def _history(cache) -> dict[tuple, float]:
    out: dict[tuple, float] = {}
    fam: dict[tuple, float] = {}
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for rec in cache.builds():
            s = rec.get("seconds")
            if isinstance(s, (int, float)):
                out[("key", rec["key"])] = float(s)
                out[("name", rec["kind"], rec["name"])] = float(s)
                fam.setdefault((rec["kind"], rec["name"]), float(s))
    for (kind, name), s in fam.items():      # retrainings: "<dataset>-<model>-<method>-..."
        parts = name.split("-")
        if kind in ("roar", "road") and len(parts) > 2:
            out.setdefault((kind, parts[0], parts[1]), s)
    return out


def build_plan(cases: Iterable[tuple[str, Any]], ctx, *, estimate: bool = True) -> Plan:
    """The plan of ``cases`` ((nodeid, ``suite.specs.Case``) pairs) for the run's ``ctx``."""
    p = _Planner(ctx, estimate=estimate)
    for nodeid, case in cases:
        p.case(nodeid, case)
    return p.plan


def items_cases(items: Sequence) -> list[tuple[str, Any]]:
    """(nodeid, Case) of the collected pytest items that are benchmark cases."""
    from suite.specs import Case

    out = []
    for item in items:
        case = getattr(getattr(item, "callspec", None), "params", {}).get("case")
        if isinstance(case, Case):
            out.append((item.nodeid, case))
    return out


# -- building one node (where it runs: this process, or a Ray worker) -------------------------

def build_node(ctx, task: dict) -> None:
    """Build what ``task`` names into ``ctx.cache``, with the code the cases use (so with the same
    keys, atomic writes and builds.log lines); what is already cached is loaded, not rebuilt."""
    from suite.artifacts import trained_model
    from suite.checkpoints import load_for
    from suite.methods.extract import split_attributions
    from suite.metrics import road, roar

    ds = load_for(task["dataset"], task["model"], ctx)
    op = task["op"]
    if op == "train":      # a base model of any seed (BASE_SEED_METRICS train one per seed)
        trained_model(ctx, ds, task["model"], task.get("seed", ctx.seeds[0]))
        return
    tm = trained_model(ctx, ds, task["model"], ctx.seeds[0])
    if op == "extract":
        split_attributions(ctx, ds, tm, task["method"], task["split"])
    elif op == "retrain":
        roar.evaluate(ctx, ds, tm, task["method"], mode=task["mode"],
                      fractions=(task["fraction"],), seeds=(task["seed"],))
    elif op == "road":
        road.evaluate(ctx, ds, tm, task["method"], order="morf", fractions=tuple(task["fractions"]),
                      seeds=tuple(task["seeds"]), retrain=True)
    else:
        raise ValueError(f"unknown build op {op!r}; known: train, extract, retrain, road")
