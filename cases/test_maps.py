"""The maps every method draws on a few test images of each (dataset, model): the report's
"coherence" picture, and a check that every applicable method runs on every trained model."""
import pytest
import torch

from suite.methods import explain, extract_cached, method_params, plot_maps
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


def test_maps_by_layer(case, dataset, trained, sb_context, record):
    """Grad-CAM at each declared block of the model with a feature map (the studies' "saliency
    maps by layers" picture); at the model's Grad-CAM layer it is the gradcam method's map."""
    from suite.methods import predict
    from suite.methods.backprop import gradcam_by_layer

    if MODELS[case.model].gradcam_layer is None:
        pytest.skip(f"{case.model} has no feature map (no Grad-CAM layer)")
    x, _, _ = dataset.split("test")
    x = x[:N_IMAGES].to(sb_context.device)
    target = predict(trained.model, x)
    cams = gradcam_by_layer(trained.model, case.model, x, target)
    record.figure(plot_maps(x.cpu(), {k: v.cpu() for k, v in cams.items()},
                            aggregation={k: "sum" for k in cams}),
                  f"Grad-CAM by layer on {case.dataset} / {case.model} (rows: test images; "
                  "columns: input, then each declared block, input to output)")
    record(details={"layers": list(cams)})
    for layer, cam in cams.items():
        assert cam.shape == (len(x), 1) + tuple(x.shape[2:]), layer
        assert torch.isfinite(cam).all() and float(cam.min()) >= 0.0, layer
    layer = MODELS[case.model].gradcam_layer
    assert layer in cams
    ref = explain("gradcam", trained.model, x, target, model_name=case.model)
    torch.testing.assert_close(cams[layer], ref)
