"""Unit tests of suite.methods: the exact properties the methods' papers state (cited per
test), hook hygiene, controls, aggregation, the registry's ids and per-model applicability.
Tiny models, float64 where the tolerance must be tight, CPU only."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import suite.methods as M
from suite.registry import METHODS as INFO  # one record per method (MethodSpec)
from suite.models import build_model
from suite.registry import METHODS, MODELS

SUITE_MODELS = ("simplecnn", "mlp", "resnet8", "camcnn", "cbamcnn", "resattn", "warn")
ALL_IDS = {"gradient", "ixg", "deconvnet", "guidedbp", "intgrad", "gradcam", "ggcam", "smoothgrad",
           "sgsquared", "vargrad", "lrp_zero", "lrp_e0p01", "lrp_e100", "sens_l2", "sens_linf",
           "deconv_l2", "deconv_linf", "random", "sobel", "oracle"}
SHAPE = (1, 16, 16)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread. With 2 OpenMP threads on a busy 2-core machine a 16x16
    conv takes ~400x longer (threads spin waiting for a core), which made this file take 60 s."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def model64(name: str, seed: int = 0) -> nn.Module:
    return build_model(name, 5, SHAPE, seed).double().eval()


def data64(n: int = 3, seed: int = 0, shape=SHAPE) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return (torch.rand((n,) + tuple(shape), generator=g, dtype=torch.float64),
            torch.randint(0, 5, (n,), generator=g))


def randomize_bn(model: nn.Module, seed: int = 1, bias_free: bool = False) -> nn.Module:
    """Non-trivial BatchNorm statistics (fresh ones are the identity)."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            c = m.num_features
            m.running_var.copy_(torch.rand(c, generator=g, dtype=m.running_var.dtype) + 0.5)
            m.weight.data.copy_(torch.rand(c, generator=g, dtype=m.weight.dtype) + 0.5)
            if not bias_free:
                m.running_mean.copy_(torch.randn(c, generator=g, dtype=m.running_mean.dtype) * 0.1)
                m.bias.data.copy_(torch.randn(c, generator=g, dtype=m.bias.dtype) * 0.1)
    return model


def score(model, x, t):
    with torch.no_grad():
        return model(x).gather(1, t[:, None]).squeeze(1)


def no_hooks_left(model: nn.Module) -> None:
    for name, m in model.named_modules():
        for attr in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks",
                     "_backward_pre_hooks"):
            assert not getattr(m, attr), f"{attr} left on module {name!r}"
    assert torch._C._len_torch_function_stack() == 0, "a TorchFunctionMode is still active"


# ----------------------------------------------------------------------------- registry
def test_every_id_is_registered_and_none_is_a_substring_of_another():
    assert set(METHODS) >= ALL_IDS
    ids = sorted(METHODS)
    clashes = [(a, b) for a in ids for b in ids if a != b and a in b]
    assert not clashes, f"method ids that are substrings of others (pytest -k ambiguity): {clashes}"
    for name in METHODS:
        assert INFO[name].aggregation in M.AGGREGATIONS


def test_registry_records_default_aggregation_and_flags():
    assert M.default_aggregation("sens_l2") == "l2"
    assert M.default_aggregation("sens_linf") == "linf"
    assert M.default_aggregation("deconv_l2") == "l2"
    assert M.default_aggregation("deconv_linf") == "linf"
    assert M.default_aggregation("lrp_e100") == "sum"
    assert METHODS["gradcam"].needs_layer and METHODS["ggcam"].needs_layer
    assert METHODS["oracle"].needs_mask
    for c in ("random", "sobel", "oracle"):
        assert METHODS[c].is_control and not METHODS[c].needs_gradient
    with pytest.raises(KeyError, match="nosuch"):
        M.default_aggregation("nosuch")


def test_method_params_per_scale():
    assert M.method_params("smoothgrad", "smoke")["n_samples"] == 4
    assert M.method_params("vargrad", "small")["n_samples"] == 10
    assert M.method_params("sgsquared", "paper")["n_samples"] == 25
    assert M.method_params("smoothgrad", "paper")["noise_level"] == 0.15
    assert M.method_params("intgrad", "smoke")["n_steps"] == 8
    assert M.method_params("intgrad", "paper")["n_steps"] == 50
    assert M.method_params("lrp_e0p01")["epsilon"] == 0.01
    with pytest.raises(ValueError, match="huge"):
        M.method_params("intgrad", "huge")


# ----------------------------------------------------------------------------- aggregation
def test_aggregate_rules_torch_and_numpy():
    a = torch.tensor([[[[3.0]], [[-4.0]]]])                      # (1, 2, 1, 1)
    expect = {"abs_sum": 7.0, "l2": 5.0, "linf": 4.0, "sum": -1.0}
    for how, v in expect.items():
        t = M.aggregate(a, how)
        n = M.aggregate(a.numpy(), how)
        assert t.shape == (1, 1, 1, 1) and isinstance(t, torch.Tensor) and t.item() == v
        assert n.shape == (1, 1, 1, 1) and isinstance(n, np.ndarray) and n.item() == v


def test_aggregate_rejects_unknown_rule_naming_it_and_the_allowed_ones():
    with pytest.raises(ValueError, match=r"'max'.*abs_sum, l2, linf, sum"):
        M.aggregate(torch.zeros(1, 3, 2, 2), "max")
    with pytest.raises(ValueError, match="N, C, H, W"):
        M.aggregate(torch.zeros(3, 2, 2), "sum")


# ----------------------------------------------------------------------------- LRP
@pytest.mark.parametrize("name", ["simplecnn", "mlp", "resnet8", "camcnn"])
def test_lrp_epsilon_zero_equals_input_x_gradient_on_relu_networks(name):
    model = randomize_bn(model64(name))
    x, t = data64()
    ixg = M.explain("ixg", model, x, t, model_name=name)
    lrp0 = M.explain("lrp_zero", model, x, t, model_name=name)
    torch.testing.assert_close(lrp0, ixg, rtol=1e-12, atol=1e-14)
    # the stabiliser hooks themselves (eps > 0) converge to the same map as eps -> 0
    tiny = M.explain("lrp_e0p01", model, x, t, model_name=name, epsilon=1e-12)
    torch.testing.assert_close(tiny, ixg, rtol=1e-6, atol=1e-9)


class BiasFreeCNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.relu1 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, padding=1, bias=False)
        self.relu2 = nn.ReLU()
        self.gap = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(24, 5, bias=False)

    def forward(self, x):
        return self.fc(torch.flatten(self.gap(self.relu2(self.conv2(self.pool(self.relu1(self.conv1(x)))))), 1))


def test_lrp_relevance_sums_to_the_output_on_bias_free_relu_networks():
    torch.manual_seed(0)
    x, t = data64(4)
    nets = {"cnn": BiasFreeCNN().double().eval()}
    res = randomize_bn(model64("resnet8"), bias_free=True)   # skips + BatchNorm without shift
    nn.init.zeros_(res.head.fc.bias)
    nets["resnet8"] = res
    for label, net in nets.items():
        f = score(net, x, t)
        rel = M.explain("lrp_zero", net, x, t, model_name=label).sum(dim=(1, 2, 3))
        torch.testing.assert_close(rel, f, rtol=1e-10, atol=1e-12, msg=f"{label}: not conserved")
        # epsilon absorbs relevance: |sum| shrinks, never grows
        rel_eps = M.explain("lrp_e0p01", net, x, t, model_name=label).sum(dim=(1, 2, 3))
        assert torch.all(rel_eps.abs() <= f.abs() + 1e-12)


class CaptumFriendly(nn.Module):
    """Conv/ReLU/Linear only, flatten functional: every module captum's LRP has a rule for."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(4, 4, 3, stride=2, padding=1)
        self.relu2 = nn.ReLU()
        self.fc = nn.Linear(4 * 8 * 8, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.relu2(self.conv2(self.relu1(self.conv1(x)))), 1))


@pytest.mark.parametrize("eps", [0.01, 100.0])
def test_lrp_epsilon_matches_captum_where_captum_applies(eps):
    from captum.attr import LRP
    from captum.attr._utils.lrp_rules import EpsilonRule

    torch.manual_seed(1)
    net = CaptumFriendly().double().eval()
    x, t = data64(3)
    ours = M.explain("lrp_e0p01", net, x, t, model_name="friendly", epsilon=eps)
    for m in (net.conv1, net.conv2, net.fc):
        m.rule = EpsilonRule(epsilon=eps)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ref = LRP(net).attribute(x.clone(), target=t)
    finally:
        for m in (net.conv1, net.conv2, net.fc):
            if hasattr(m, "rule"):      # captum removes the rules itself after attribute()
                del m.rule
    torch.testing.assert_close(ours, ref, rtol=1e-7, atol=1e-12)


def test_lrp_declares_models_without_rules_not_applicable():
    net = nn.Sequential(nn.Flatten(), nn.Linear(256, 8), nn.Tanh(), nn.Linear(8, 5))
    reason = M.applies("lrp_e0p01", "tanhnet", net)
    assert reason is not None and "Tanh" in reason and "tanhnet" in reason
    with pytest.raises(M.NotApplicableError, match="Tanh"):
        M.explain("lrp_e100", net, torch.rand(2, *SHAPE), torch.tensor([0, 1]), model_name="tanhnet")
    assert M.applies("gradient", "tanhnet", net) is None
    for name in SUITE_MODELS:
        if name == "warn":   # softmax attention and tanh gates: no LRP rule, left out as data
            reason = M.applies("lrp_zero", name)
            assert reason is not None and "Softmax" in reason and "Tanh" in reason
            continue
        assert M.applies("lrp_zero", name) is None, name


# ----------------------------------------------------------------------------- integrated gradients
def test_integrated_gradients_is_exact_on_a_linear_model_for_any_step_count():
    """Exact up to captum's float32 quadrature weights (sum 1 to ~1e-7)."""
    torch.manual_seed(2)
    lin = nn.Sequential(nn.Flatten(), nn.Linear(256, 5)).double().eval()
    x, t = data64(3)
    w = lin[1].weight.detach()[t].reshape(x.shape)
    for steps in (2, 3, 7, 50):    # captum needs n_steps >= 2
        for rule in ("gausslegendre", "riemann_right", "riemann_left", "riemann_middle"):
            for base in (0.0, 0.3):
                a = M.explain("intgrad", lin, x, t, n_steps=steps, method=rule, baseline=base)
                torch.testing.assert_close(a, (x - base) * w, rtol=1e-6, atol=1e-12)
    with pytest.raises(ValueError, match="riemann_trapezoid"):   # captum's weights sum to (n-1)/n
        M.explain("intgrad", lin, x, t, n_steps=4, method="riemann_trapezoid")


@pytest.mark.parametrize("name", ["simplecnn", "cbamcnn", "resattn", "warn"])
def test_integrated_gradients_completeness(name):
    model = model64(name)
    x, t = data64(2)
    a = M.explain("intgrad", model, x, t, model_name=name, n_steps=128)
    delta = score(model, x, t) - score(model, torch.zeros_like(x), t)
    torch.testing.assert_close(a.sum(dim=(1, 2, 3)), delta, rtol=2e-3, atol=1e-5)


# ----------------------------------------------------------------------------- SmoothGrad family
def test_noise_methods_with_zero_noise_reduce_to_the_gradient():
    model = model64("simplecnn")
    x, t = data64(3)
    g = M.explain("gradient", model, x, t)
    kw = dict(n_samples=5, noise_level=0.0, max_images=6)   # 2 samples per chunk: chunking on
    torch.testing.assert_close(M.explain("smoothgrad", model, x, t, **kw), g, rtol=1e-12, atol=0)
    torch.testing.assert_close(M.explain("sgsquared", model, x, t, **kw), g * g, rtol=1e-12, atol=0)
    var = M.explain("vargrad", model, x, t, **kw)
    assert float(var.abs().max()) <= 1e-12 * float((g * g).max())


def test_noise_methods_are_seeded_per_image_and_independent_of_the_batch():
    model = model64("simplecnn")
    x, t = data64(4)
    kw = dict(n_samples=3, noise_level=0.15)
    whole = M.explain("vargrad", model, x, t, seed=7, **kw)
    again = M.explain("vargrad", model, x, t, seed=7, **kw)
    assert torch.equal(whole, again)
    part = M.explain("vargrad", model, x[2:], t[2:], seed=7, index=torch.tensor([2, 3]), **kw)
    torch.testing.assert_close(part, whole[2:], rtol=1e-12, atol=1e-20)
    other = M.explain("vargrad", model, x, t, seed=8, **kw)
    assert not torch.allclose(other, whole)
    assert not torch.allclose(M.explain("smoothgrad", model, x, t, **kw),
                              M.explain("gradient", model, x, t))


from suite.methods.ensembles import BASES, ENSEMBLES, IDS, ensemble_id  # noqa: E402


def test_ensemble_ids_listed_and_named_by_ensemble_and_base():
    assert len(IDS) == 3 * 7 and set(IDS.values()) <= set(METHODS)
    assert ensemble_id("sg", "gradient") == "smoothgrad" and ensemble_id("var", "intgrad") == "var_ig"
    assert ensemble_id("sgsq", "ggcam") == "sgsq_gcam"
    with pytest.raises(ValueError, match="lrp_zero"):
        ensemble_id("sg", "lrp_zero")
    with pytest.raises(ValueError, match="'mean'"):
        ensemble_id("mean", "intgrad")
    from suite.methods.__main__ import table

    listing = table()
    assert all(f"\n{i} " in listing for i in IDS.values())
    for (ens, base), i in IDS.items():   # SG pools like its base; SG-SQ and VarGrad are >= 0: sum
        want = INFO[base].aggregation if ens == "sg" else "sum"
        assert INFO[i].aggregation == want, i
        assert METHODS[i].needs_layer == METHODS[base].needs_layer, i


def _base_kw(base, name):
    return {"model_name": name} if METHODS[base].needs_layer else {}


@pytest.mark.parametrize("base", ["gradient"] + [b for b, _, _ in BASES.values()])
def test_ensembles_with_zero_noise_are_the_base_its_square_and_zero(base):
    model = randomize_bn(model64("simplecnn"))
    x, t = data64(3)
    kw = dict(n_samples=3, noise_level=0.0, max_images=6, **_base_kw(base, "simplecnn"))
    extra = {"n_steps": 8} if base == "intgrad" else {}
    ref = M.explain(base, model, x, t, **_base_kw(base, "simplecnn"), **extra)
    assert float(ref.abs().max()) > 0
    sg = M.explain(IDS["sg", base], model, x, t, **kw, **extra)
    torch.testing.assert_close(sg, ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(M.explain(IDS["sgsq", base], model, x, t, **kw, **extra), ref * ref,
                               rtol=1e-12, atol=1e-18)
    var = M.explain(IDS["var", base], model, x, t, **kw, **extra)
    assert float(var.abs().max()) <= 1e-12 * float((ref * ref).max())


class Linear(nn.Module):
    """No ReLU: gradient, guided backprop and DeconvNet maps are the weights, whatever the input."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(256, 5)

    def forward(self, x):
        return self.fc(x.flatten(1))


@pytest.mark.parametrize("base", ["gradient", "guidedbp", "deconvnet"])
def test_ensembles_of_an_input_independent_map_are_it_its_square_and_zero(base):
    # real noise (std 0.15 x range): the maps do not depend on the input, so the known answers hold
    torch.manual_seed(5)
    net = Linear().double().eval()
    x, t = data64(4)
    ref = M.explain(base, net, x, t)
    torch.testing.assert_close(ref, net.fc.weight.detach()[t].reshape(x.shape), rtol=0, atol=0)
    kw = dict(n_samples=6, noise_level=0.15, seed=3)
    torch.testing.assert_close(M.explain(IDS["sg", base], net, x, t, **kw), ref, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(M.explain(IDS["sgsq", base], net, x, t, **kw), ref * ref, rtol=1e-12,
                               atol=1e-18)
    assert float(M.explain(IDS["var", base], net, x, t, **kw).abs().max()) <= 1e-12


def test_ensembles_draw_smoothgrads_noise_per_image_and_batch_independently():
    model = randomize_bn(model64("simplecnn"))
    x, t = data64(4)
    kw = dict(n_samples=3, noise_level=0.15, seed=7)
    # the noise is smoothgrad's: SG of guided backprop by hand from the same per-image draws
    from suite.methods.gradients import SALT_NOISE, image_seeds

    sig = 0.15 * (x.flatten(1).amax(1) - x.flatten(1).amin(1))
    hand = torch.zeros_like(x)
    for i, s in enumerate(image_seeds(7, None, 4, SALT_NOISE)):
        eps = torch.randn((3,) + x.shape[1:], generator=torch.Generator().manual_seed(s),
                          dtype=x.dtype)
        xi = x[i:i + 1] + sig[i] * eps
        hand[i] = M.explain("guidedbp", model, xi, t[i].repeat(3)).mean(0)
    torch.testing.assert_close(M.explain("sg_gbp", model, x, t, **kw), hand, rtol=1e-10, atol=1e-14)
    for name in ("sg_ig", "var_cam", "sgsq_inxg"):
        extra = {"model_name": "simplecnn"} if METHODS[name].needs_layer else {}
        if name == "sg_ig":
            extra["n_steps"] = 4
        whole = M.explain(name, model, x, t, **kw, **extra)
        part = M.explain(name, model, x[2:], t[2:], index=torch.tensor([2, 3]), **kw, **extra)
        torch.testing.assert_close(part, whole[2:], rtol=1e-10, atol=1e-14)
        chunked = M.explain(name, model, x, t, max_images=4 * (4 if name == "sg_ig" else 1), **kw,
                            **extra)   # one noisy copy per base call
        torch.testing.assert_close(chunked, whole, rtol=1e-10, atol=1e-14)
        assert not torch.allclose(M.explain(name, model, x, t, **{**kw, "seed": 8}, **extra), whole)


def test_ensemble_params_are_the_bases_and_the_noise_at_each_scale():
    assert M.method_params("sg_ig", "small") == {**M.method_params("intgrad", "small"),
                                                 **{k: v for k, v in M.method_params(
                                                     "smoothgrad", "small").items()}}
    assert M.method_params("var_ig", "smoke")["n_steps"] == 8
    assert M.method_params("sgsq_cam", "paper")["n_samples"] == 25
    with pytest.raises(TypeError, match="n_step"):
        M.explain("sg_gbp", model64("simplecnn"), *data64(1), n_step=3)


# ----------------------------------------------------------------------------- guided / deconv / CAM
class NoRelu(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 3, 3, padding=1)
        self.act = nn.Sigmoid()
        self.fc = nn.Linear(3 * 16 * 16, 5)

    def forward(self, x):
        return self.fc(torch.flatten(self.act(self.conv(x)), 1))


def test_guided_backprop_and_deconvnet_equal_the_gradient_without_relus():
    torch.manual_seed(3)
    net = NoRelu().double().eval()
    x, t = data64(3)
    g = M.explain("gradient", net, x, t)
    torch.testing.assert_close(M.explain("guidedbp", net, x, t), g, rtol=0, atol=0)
    torch.testing.assert_close(M.explain("deconvnet", net, x, t), g, rtol=0, atol=0)


@pytest.mark.parametrize("name", ["simplecnn", "resnet8", "cbamcnn", "resattn", "warn"])
def test_guided_backprop_and_deconvnet_match_captum_where_it_sees_every_relu(name):
    from captum.attr import Deconvolution, GuidedBackprop

    model = randomize_bn(model64(name))
    x, t = data64(2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gb = GuidedBackprop(model).attribute(x.clone(), target=t)
        dc = Deconvolution(model).attribute(x.clone(), target=t)
    torch.testing.assert_close(M.explain("guidedbp", model, x, t), gb, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(M.explain("deconvnet", model, x, t), dc, rtol=1e-12, atol=1e-15)


class ReusedRelu(nn.Module):
    """One ReLU module used twice; ``style`` chooses module / in-place module / functional."""

    def __init__(self, style: str):
        super().__init__()
        self.style = style
        self.fc1, self.fc2, self.fc3 = nn.Linear(12, 6), nn.Linear(6, 6), nn.Linear(6, 3)
        self.relu = nn.ReLU(inplace=style == "inplace")

    def act(self, h):
        return F.relu(h) if self.style == "functional" else self.relu(h)

    def forward(self, x):
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x.flatten(1))))))


def hand_rule(net: ReusedRelu, x: torch.Tensor, t: torch.Tensor, guided: bool) -> torch.Tensor:
    """Guided backprop / DeconvNet of the 3-layer MLP written out layer by layer."""
    W1, W2, W3 = net.fc1.weight, net.fc2.weight, net.fc3.weight
    h1 = x.flatten(1) @ W1.T + net.fc1.bias
    h2 = h1.clamp(min=0) @ W2.T + net.fc2.bias
    g = W3[t]                                                # d out / d relu(h2)
    g = g.clamp(min=0) * ((h2 > 0) if guided else 1)
    g = g @ W2
    g = g.clamp(min=0) * ((h1 > 0) if guided else 1)
    return (g @ W1).reshape(x.shape)


@pytest.mark.parametrize("style", ["module", "inplace", "functional"])
def test_reused_inplace_and_functional_relus_follow_the_rule(style):
    torch.manual_seed(4)
    net = ReusedRelu(style).double().eval()
    x = torch.randn(4, 3, 2, 2, dtype=torch.float64)
    t = torch.tensor([0, 1, 2, 1])
    before = net(x).detach()
    for method, guided in (("guidedbp", True), ("deconvnet", False)):
        with torch.no_grad():
            ref = hand_rule(net, x, t, guided)
        torch.testing.assert_close(M.explain(method, net, x, t), ref, rtol=1e-12, atol=1e-14)
    assert torch.equal(net(x), before)
    no_hooks_left(net)


def test_guided_grad_cam_is_guided_backprop_times_upsampled_grad_cam():
    for name in ("simplecnn", "resnet8", "cbamcnn", "resattn", "warn"):
        model = model64(name)
        x, t = data64(3)
        cam = M.explain("gradcam", model, x, t, model_name=name)
        assert cam.shape == (3, 1, 16, 16) and float(cam.min()) >= 0.0
        assert float(cam.max()) > 0.0
        gb = M.explain("guidedbp", model, x, t)
        torch.testing.assert_close(M.explain("ggcam", model, x, t, model_name=name), gb * cam,
                                   rtol=1e-12, atol=0)


def test_grad_cam_by_hand_on_the_cam_architecture():
    """On conv -> ReLU -> GAP -> linear, Grad-CAM weights are the class weights / (h w)."""
    model = model64("camcnn")
    x, t = data64(2)
    feats = model.features(x).detach()                       # (N, 64, 4, 4)
    w = model.classifier.fc.weight.detach()[t] / (feats.shape[2] * feats.shape[3])
    cam = F.relu((w[:, :, None, None] * feats).sum(1, keepdim=True))
    up = F.interpolate(cam, size=(16, 16), mode="bilinear", align_corners=False)
    torch.testing.assert_close(M.explain("gradcam", model, x, t, model_name="camcnn"), up,
                               rtol=1e-10, atol=1e-14)


def test_layer_methods_need_a_layer():
    mlp = model64("mlp")
    x, t = data64(2)
    with pytest.raises(M.NotApplicableError, match="mlp"):
        M.explain("gradcam", mlp, x, t, model_name="mlp")
    with pytest.raises(ValueError, match="layer"):
        M.explain("ggcam", mlp, x, t)


# ----------------------------------------------------------------------------- hygiene
@pytest.mark.parametrize("method", sorted(ALL_IDS))
def test_methods_leave_outputs_params_modes_and_hooks_as_they_were(method):
    model = randomize_bn(build_model("resnet8", 5, SHAPE, 0).double())
    model.train()
    model.layer2.eval()                                      # a mixed mode must come back mixed
    x, t = data64(3)
    with torch.no_grad():
        model.eval()
        before = model(x)
        model.train()
        model.layer2.eval()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    modes = {n: m.training for n, m in model.named_modules()}
    kw = dict(M.method_params(method, "smoke"))
    kw.pop("layer", None)
    if METHODS[method].needs_mask:
        kw["mask"] = torch.ones(3, 1, 16, 16)
    M.explain(method, model, x, t, model_name="resnet8", **kw)
    no_hooks_left(model)
    assert {n: m.training for n, m in model.named_modules()} == modes
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), f"{method} changed {k}"
    assert all(p.grad is None for p in model.parameters())
    with torch.no_grad():
        model.eval()
        assert torch.equal(model(x), before)


def test_nan_and_inf_raise_naming_the_method():
    model = model64("simplecnn")
    with torch.no_grad():
        model.classifier.fc2.weight[0, 0] = float("nan")
    x, t = data64(2)
    with pytest.raises(M.AttributionError, match=r"'gradient' produced \d+ NaN .* model simplecnn"):
        M.explain("gradient", model, x, t, model_name="simplecnn")
    bad = torch.zeros(2, 1, 16, 16, dtype=torch.float64)
    bad[0, 0, 0, 0] = float("inf")
    with pytest.raises(M.AttributionError, match=r"'lrp_e100' produced 0 NaN and 1 infinite"):
        M.check_attribution(bad, x, "lrp_e100", "simplecnn")
    with pytest.raises(M.AttributionError, match="shape"):
        M.check_attribution(torch.zeros(2, 2, 16, 16), x, "ixg", "simplecnn")


# ----------------------------------------------------------------------------- controls
def test_random_control_is_seeded_model_free_and_batch_independent():
    x, t = data64(5)
    a = M.explain("random", model64("simplecnn"), x, t, seed=3)
    b = M.explain("random", model64("mlp", seed=9), x, t, seed=3)
    assert torch.equal(a, b) and a.shape == x.shape
    part = M.explain("random", model64("mlp"), x[3:], t[3:], seed=3, index=torch.tensor([3, 4]))
    assert torch.equal(part, a[3:])
    assert not torch.equal(M.explain("random", model64("mlp"), x, t, seed=4), a)
    assert float(a.min()) >= 0.0 and float(a.max()) < 1.0


def test_sobel_control_equals_scipy():
    from scipy import ndimage

    x, t = data64(2, shape=(3, 9, 11))
    s = M.explain("sobel", nn.Identity(), x, t).numpy()
    for i in range(2):
        for c in range(3):
            ref = np.hypot(ndimage.sobel(x[i, c].numpy(), axis=0, mode="reflect"),
                           ndimage.sobel(x[i, c].numpy(), axis=1, mode="reflect"))
            np.testing.assert_allclose(s[i, c], ref, rtol=1e-12, atol=1e-12)


def test_oracle_returns_the_mask_and_requires_one():
    x, t = data64(2)
    mask = torch.rand(2, 16, 16) > 0.5
    out = M.explain("oracle", nn.Identity(), x, t, mask=mask)
    assert out.shape == (2, 1, 16, 16) and out.dtype == x.dtype
    assert torch.equal(out[:, 0].bool(), mask)
    with pytest.raises(ValueError, match="mask"):
        M.explain("oracle", nn.Identity(), x, t)


# ----------------------------------------------------------------------------- every model
def _cases():
    for model in SUITE_MODELS:
        for method in sorted(ALL_IDS):
            if METHODS[method].needs_layer and MODELS[model].gradcam_layer is None:
                continue
            if method.startswith("lrp_") and model == "warn":   # no LRP rules (tested above)
                continue
            yield pytest.param(model, method, id=f"{model}-{method}")


@pytest.mark.parametrize("model_name,method", list(_cases()))
def test_every_method_runs_on_every_suite_model(model_name, method):
    model = build_model(model_name, 4, (2, 12, 12), seed=0)
    x = torch.rand(3, 2, 12, 12)
    t = torch.tensor([0, 3, 1])
    kw = dict(M.method_params(method, "smoke"))
    kw.pop("layer", None)
    if METHODS[method].needs_mask:
        kw["mask"] = torch.ones(3, 1, 12, 12)
    a = M.explain(method, model, x, t, model_name=model_name, **kw)
    assert a.shape in ((3, 2, 12, 12), (3, 1, 12, 12)) and a.device == x.device
    assert a.dtype == x.dtype
    if method in ("gradcam", "oracle"):
        assert a.shape[1] == 1
    assert M.aggregate(a, M.default_aggregation(method)).shape == (3, 1, 12, 12)


class Explodes(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.relu = nn.ReLU()

    def forward(self, x):
        self.relu(self.conv(x))
        raise RuntimeError("boom")


@pytest.mark.parametrize("method", ["guidedbp", "deconvnet", "lrp_e0p01", "gradcam"])
def test_hooks_and_modes_are_removed_when_the_model_raises(method):
    net = Explodes().train()
    x, t = data64(2)
    with pytest.raises(RuntimeError, match="boom"):
        M.explain(method, net.double(), x, t, **({"layer": "relu"} if method == "gradcam" else {}))
    no_hooks_left(net)
    assert net.training and net.conv.training


@pytest.mark.parametrize("method", ["gradient", "intgrad", "smoothgrad", "guidedbp", "gradcam",
                                    "ggcam", "lrp_e0p01"])
def test_frozen_models_give_the_same_maps(method):
    """Cached trained models come with requires_grad=False parameters; maps must not change
    and the flags must stay as they were."""
    x, t = data64(2)
    live, frozen = model64("simplecnn"), model64("simplecnn")
    for p in frozen.parameters():
        p.requires_grad_(False)
    kw = {k: v for k, v in M.method_params(method, "smoke").items() if k != "layer"}
    a = M.explain(method, live, x, t, model_name="simplecnn", **kw)
    b = M.explain(method, frozen, x, t, model_name="simplecnn", **kw)
    torch.testing.assert_close(b, a, rtol=1e-12, atol=0)
    assert not any(p.requires_grad for p in frozen.parameters())


def test_gradcam_by_layer_covers_the_spatial_declared_layers_and_leaves_no_hooks():
    from suite.methods.backprop import gradcam_by_layer, spatial_layers

    model = model64("simplecnn")
    assert spatial_layers(model, "simplecnn", SHAPE) == ["features.conv1", "features.conv2",
                                                         "features.conv3"]
    x, t = data64(2)
    cams = gradcam_by_layer(model, "simplecnn", x, t)
    assert list(cams) == ["features.conv1", "features.conv2", "features.conv3", "features.relu3"]
    torch.testing.assert_close(cams["features.relu3"],
                               M.explain("gradcam", model, x, t, model_name="simplecnn"),
                               rtol=0, atol=0)
    for layer, cam in cams.items():
        torch.testing.assert_close(cam, M.explain("gradcam", model, x, t, layer=layer), rtol=0, atol=0)
    no_hooks_left(model)
    assert list(gradcam_by_layer(model64("warn"), "warn", x, t)) == ["stem", "group1", "group2",
                                                                     "group3", "post"]
