"""The maps every method draws on a few test images of each (dataset, model): the report's
"coherence" picture, and a check that every applicable method runs on every trained model."""
import pytest
import torch

from suite.methods import extract_cached, method_params, plot_maps
from suite.registry import DATASETS, METHODS, MODELS, method_applies

pytestmark = pytest.mark.metric("maps")

N_IMAGES = 6


def test_maps(case, dataset, trained, sb_context, record):
    x, y, masks = dataset.split("test")
    x, y = x[:N_IMAGES], y[:N_IMAGES]
    masks = masks[:N_IMAGES] if masks is not None else None
    applicable = [m for m in METHODS.values()
                  if method_applies(m, MODELS[case.model], DATASETS[case.dataset]) is None]
    maps = {}
    for m in applicable:
        maps[m.name], _ = extract_cached(
            sb_context.cache, model_key=trained.key, model=trained.model, model_name=case.model,
            method_name=m.name, x=x, split=f"test[:{N_IMAGES}]", labels=y, masks=masks,
            device=sb_context.device, seed=sb_context.seeds[0],
            params=method_params(m.name, sb_context.scale))
    fig = plot_maps(x, maps)
    record.figure(fig, f"attribution maps on {case.dataset} / {case.model} (rows: test images; "
                       "columns: input, then each method)")
    record(details={"methods": sorted(maps), "not_applicable": sorted(set(METHODS) - set(maps))})
    for name, a in maps.items():
        assert a.shape[0] == len(x) and a.shape[2:] == tuple(x.shape[2:]), name
        assert torch.isfinite(torch.as_tensor(a)).all(), name
    assert {"gradient", "intgrad", "smoothgrad", "random"} <= set(maps)
