"""Metrics: each module (or sub-package) registers its place in the case matrix with
``register_metric`` and exposes ``evaluate_case(case, ...) -> suite.contract.CaseResult``; nothing
here records or asserts (the plugin's ``judge`` does). Every module of this package is imported
(and so registered) when the package is: adding a metric is adding a module and a three-line case
file (README, "Add a metric")."""
from __future__ import annotations

import importlib
import pkgutil

for _m in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _m.name.startswith("_"):   # __main__ is the command line listing, not a metric
        importlib.import_module(f"{__name__}.{_m.name}")
