"""Attribution methods: captum wrappers, our own implementations where captum lacks one or is
wrong for the suite, and the controls (random, sobel, oracle).

Importing this package registers every method in ``suite.registry.METHODS``. Call them through
``explain(method_name, model, x, target, model_name=..., **params)``; whole datasets through
``extract`` / ``extract_cached``. ``python -m suite.methods`` lists the registry.
"""
from suite.methods import backprop, controls, gradients, lrp  # noqa: F401  (registers methods)
from suite.methods import ensembles  # noqa: F401,E402  (the SmoothGrad family over the bases)
from suite.methods.aggregate import aggregate
from suite.methods.base import (AGGREGATIONS, AttributionError, MethodError,
                                ModelModifiedError,
                                NotApplicableError, applies, check_attribution,
                                default_aggregation, eval_mode, explain, method_params)
from suite.methods.extract import extract, extract_cached, fingerprint, predict
from suite.methods.plot import plot_maps

__all__ = ["AGGREGATIONS", "AttributionError", "MethodError", "ModelModifiedError", "NotApplicableError",
           "aggregate", "applies", "check_attribution", "default_aggregation", "eval_mode",
           "explain", "extract", "extract_cached", "fingerprint", "method_params", "plot_maps",
           "predict"]
