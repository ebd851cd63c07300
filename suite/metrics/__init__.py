"""Metrics: each module holds pure functions returning frozen result objects, and registers its
place in the case matrix with ``register_metric``. Every module of this package is imported (and so
registered) when the package is: adding a metric is adding a module and a case file."""
from __future__ import annotations

import importlib
import pkgutil

from suite.registry import MetricSpec, register_metric

ACCURACY = register_metric(MetricSpec(
    "accuracy", description="test accuracy of the trained model (a gate: maps of a model that "
    "learned nothing mean nothing)", needs_method=False, higher_is_better=True))

MAPS = register_metric(MetricSpec(
    "maps", description="the attribution maps of every applicable method on a few test images "
    "(a picture for the report; the case checks every method yields a finite map of the right "
    "shape)", needs_method=False, higher_is_better=True))


for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):   # __main__ is the command line listing, not a metric
        importlib.import_module(f"{__name__}.{_m.name}")
