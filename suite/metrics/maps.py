"""The maps every method draws on a few test images of each (dataset, model): the report's
"coherence" picture, and a check that every applicable method runs on every trained model; and
Grad-CAM at each declared block (the studies' "saliency maps by layers" picture)."""
from __future__ import annotations

import torch

from suite.contract import CaseResult, Check, Picture
from suite.registry import DATASETS, METHODS, MODELS, MetricSpec, register_metric

MAPS = register_metric(MetricSpec(
    "maps", description="the attribution maps of every applicable method on a few test images "
    "(a picture for the report; the case checks every method yields a finite map of the right "
    "shape)", needs_method=False, higher_is_better=None,
    score="no score: a picture, and a check that every applicable method yields a finite map"))

#: test images whose maps are computed and checked per (dataset, model)
N_IMAGES = 6
#: test images drawn in the pictures (the checks use all N_IMAGES): 2 rows x ~40 maps per
#: (dataset, model), 12 examples of each method per dataset over the models; 6 rows were 2.8 MB of
#: the 5.1 MB page (issue 20: under 3 MB). The maps are noise-like and no coding shrinks them much
#: (lossless WebP of their palette is the smallest found), so fewer of them is the lever.
PICTURE_IMAGES = 2


def evaluate_case(case, dataset, trained, ctx) -> CaseResult:
    from suite.matrix import method_applies
    from suite.methods import extract_cached, method_params, plot_maps

    x, y, masks = dataset.split("test")
    x, y = x[:N_IMAGES], y[:N_IMAGES]
    masks = masks[:N_IMAGES] if masks is not None else None
    applicable = [m for m in METHODS.values()
                  if method_applies(m, MODELS[case.model], DATASETS[case.dataset]) is None]
    maps = {}
    for m in applicable:
        maps[m.name], _ = extract_cached(
            ctx.cache, model_key=trained.key, model=trained.model, model_name=case.model,
            method_name=m.name, x=x, split=f"test[:{N_IMAGES}]", labels=y, masks=masks,
            device=ctx.device, seed=ctx.seeds[0], params=method_params(m.name, ctx.scale))
    checks = []
    for name, a in maps.items():
        checks.append(Check("maps", a.shape[0] == len(x) and a.shape[2:] == tuple(x.shape[2:]),
                            f"{name}: map of shape {tuple(a.shape)} for images {tuple(x.shape)}"))
        checks.append(Check("maps", bool(torch.isfinite(torch.as_tensor(a)).all()),
                            f"{name}: map not finite"))
    need = {"gradient", "intgrad", "smoothgrad", "random"}
    checks.append(Check("maps", need <= set(maps), f"methods missing: {sorted(need - set(maps))}"))
    return CaseResult(
        details={"methods": sorted(maps), "not_applicable": sorted(set(METHODS) - set(maps))},
        figures=[Picture.drawn(f"attribution maps on {case.dataset} / {case.model} "
                               "(rows: test images; columns: input, then each method)",
                               plot_maps, x, maps, max_images=PICTURE_IMAGES)],
        checks=checks)


def evaluate_by_layer(case, dataset, trained, ctx) -> CaseResult:
    """Grad-CAM at each declared block of the model with a feature map; at the model's Grad-CAM
    layer it is the gradcam method's map."""
    from suite.methods import explain, plot_maps, predict
    from suite.methods.backprop import gradcam_by_layer

    if MODELS[case.model].gradcam_layer is None:
        return CaseResult(skip=f"{case.model} has no feature map (no Grad-CAM layer)")
    x, _, _ = dataset.split("test")
    x = x[:N_IMAGES].to(ctx.device)
    target = predict(trained.model, x)
    cams = gradcam_by_layer(trained.model, case.model, x, target)
    picture = Picture.drawn(f"Grad-CAM by layer on {case.dataset} / {case.model} (rows: test "
                            "images; columns: input, then each declared block, input to output)",
                            plot_maps, x.cpu(), {k: v.cpu() for k, v in cams.items()},
                            aggregation={k: "sum" for k in cams}, max_images=PICTURE_IMAGES)
    checks = []
    for layer, cam in cams.items():
        checks.append(Check("maps", cam.shape == (len(x), 1) + tuple(x.shape[2:]),
                            f"{layer}: Grad-CAM of shape {tuple(cam.shape)}"))
        checks.append(Check("maps", bool(torch.isfinite(cam).all() and float(cam.min()) >= 0.0),
                            f"{layer}: Grad-CAM not finite or negative"))
    layer = MODELS[case.model].gradcam_layer
    checks.append(Check("maps", layer in cams, f"the model's Grad-CAM layer {layer} is not drawn"))
    if layer in cams:
        ref = explain("gradcam", trained.model, x, target, model_name=case.model)
        try:
            torch.testing.assert_close(cams[layer], ref)
            differs = ""
        except AssertionError as err:   # torch's comparison, its message kept for the check
            differs = str(err)
        checks.append(Check("maps", not differs, f"Grad-CAM at {layer} differs from the gradcam "
                                                 f"method's map: {differs}"))
    return CaseResult(details={"layers": list(cams)}, figures=[picture], checks=checks)
