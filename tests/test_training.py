"""The trainer: deterministic under a seed, learns a separable problem, validates its spec."""
import pytest
import torch

from suite.models import build_model, layer_names
from suite.registry import MODELS
from suite.specs import TrainSpec
from suite.training import _augment, evaluate, recipe, train


def _toy(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 1, 8, 8, generator=g)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()  # top half brighter?
    return x, y


def _state(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_and_different_seed_differs():
    x, y = _toy()
    spec = TrainSpec(epochs=2, batch_size=32, lr=0.05, augment="crop")
    a = train(spec, build_model("simplecnn", 2, (1, 8, 8), seed=3), x, y, seed=3)
    b = train(spec, build_model("simplecnn", 2, (1, 8, 8), seed=3), x, y, seed=3)
    c = train(spec, build_model("simplecnn", 2, (1, 8, 8), seed=4), x, y, seed=4)
    sa, sb, sc = _state(a.model), _state(b.model), _state(c.model)
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)
    assert a.train_acc == b.train_acc


def test_learns_a_separable_problem():
    x, y = _toy(512)
    spec = TrainSpec(epochs=8, batch_size=64, optimizer="adam", lr=3e-3, weight_decay=0.0)
    res = train(spec, build_model("mlp", 2, (1, 8, 8), seed=0), x, y, x_test=x, y_test=y, seed=0)
    assert res.test_acc > 0.9 and len(res.history) == 8
    assert evaluate(res.model, x, y) == pytest.approx(res.train_acc)


def test_build_model_does_not_touch_global_rng():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model("simplecnn", 10, (1, 16, 16), seed=0)
    assert torch.equal(torch.rand(3), expected)


def test_augment_is_a_shift_and_flip_of_the_input():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    assert torch.equal(_augment(x, "none", torch.Generator()), x)
    out = _augment(x, "crop", torch.Generator().manual_seed(0))
    assert out.shape == x.shape
    # every output row of a crop is a contiguous run of a (reflect-)padded input row
    assert set(out[0, 0, 2].tolist()) <= set(torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect")[0, 0].flatten().tolist())


@pytest.mark.parametrize("field,value", [("optimizer", "rmsprop"), ("schedule", "cosine"),
                                         ("augment", "mixup"), ("epochs", 0)])
def test_trainspec_rejects_bad_values(field, value):
    with pytest.raises(ValueError, match=field):
        TrainSpec(**{field: value})


def test_recipe_rejects_bad_scale_and_has_bars():
    with pytest.raises(ValueError, match="smoke, small, paper"):
        recipe("digits", "simplecnn", "huge")
    assert recipe("digits", "simplecnn", "small").min_test_acc >= 0.9
    assert recipe("shapes", "mlp", "smoke").unsupported


@pytest.mark.parametrize("name", ["simplecnn", "mlp", "resnet8", "camcnn", "cbamcnn", "resattn", "warn"])
def test_models_declare_layers_that_exist(name):
    model = build_model(name, 10, (3, 32, 32), seed=0)
    names = layer_names(model, name)
    assert names and all(any(True for _ in model.get_submodule(n).parameters()) for n in names)
    if MODELS[name].gradcam_layer:
        feat = {}
        model.get_submodule(MODELS[name].gradcam_layer).register_forward_hook(
            lambda m, i, o: feat.update(shape=o.shape))   # returns None: output unchanged
        model(torch.rand(2, 3, 32, 32))
        assert len(feat["shape"]) == 4   # a spatial feature map for Grad-CAM


def test_attention_module_is_one_plus_mask_times_trunk():
    # known answer: a mask branch whose last 1x1 conv is zero gives M = sigmoid(0) = 1/2 everywhere,
    # so the module's output is exactly 1.5 x its trunk branch; odd sizes keep the trunk's size
    from suite.models.small import AttentionModule

    att = AttentionModule(4).eval()
    with torch.no_grad():
        att.mask_out.conv2.weight.zero_()
        att.mask_out.conv2.bias.zero_()
    for size in (8, 7):
        x = torch.randn(2, 4, size, size, generator=torch.Generator().manual_seed(size))
        out = att(x)
        assert out.shape == x.shape
        torch.testing.assert_close(out, 1.5 * att.trunk(x), rtol=0, atol=0)
    # a mask saturated at 0 (bias -> -inf) leaves the trunk unchanged: attention residual learning
    with torch.no_grad():
        att.mask_out.conv2.bias.fill_(-1e4)
    torch.testing.assert_close(att(x), att.trunk(x))


@pytest.mark.parametrize("name", ["resattn", "warn"])
def test_attention_nets_declared_layers_cover_every_parameter(name):
    # the sanity checks' full randomization re-initialises the declared layers: all of them
    model = build_model(name, 10, (1, 28, 28), seed=0)
    covered = {id(p) for n in layer_names(model, name) for p in model.get_submodule(n).parameters()}
    assert covered == {id(p) for p in model.parameters()}
    assert model(torch.rand(2, 1, 28, 28)).shape == (2, 10)


def test_warn_gates_known_answers():
    # WARN's output is softmax-gated: g_net * o_net + g_2 * o_2 + g_3 * o_3
    model = build_model("warn", 5, (3, 32, 32), seed=0).double().eval()
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    backbone = lambda: model.head(model.post(model.group3(model.group2(  # noqa: E731
        model.group1(model.stem(x))))))
    with torch.no_grad():
        assert not torch.allclose(model(x), backbone())
        # attention gates at zero (a backbone gate score of 1e4: exp(-1e4) is 0 in float64): the
        # output is exactly the backbone's
        model.gate.fc.weight.zero_()
        model.gate.fc.bias.fill_(1e4)
        torch.testing.assert_close(model(x), backbone(), rtol=0, atol=0)
        # every gate score 0 (module gate convs zero too): the three outputs weigh 1/3 each
        model.gate.fc.bias.zero_()

        for att in (model.attention2, model.attention3):
            att.gate.weight.zero_()
            att.gate.bias.zero_()
        z2 = model.group2(model.group1(model.stem(x)))
        z3 = model.post(model.group3(z2))
        mean = (backbone() + model.attention2(z2)[0] + model.attention3(z3)[0]) / 3
        torch.testing.assert_close(model(x), mean, rtol=1e-12, atol=1e-12)
        # an attention module's masks are a softmax over positions: each sums to 1
        h = model.attention2.mask_softmax(model.attention2.mask(
            model.attention2.relu(model.attention2.bn(z2))).flatten(2))
        torch.testing.assert_close(h.sum(-1), torch.ones(3, 2, dtype=torch.float64))



def test_per_class_accuracies_average_weighted_to_the_overall_accuracy():
    from suite.training import evaluate, per_class_accuracy

    model = build_model("simplecnn", 4, (1, 8, 8), seed=0).eval()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(50, 1, 8, 8, generator=g)
    y = torch.cat([torch.zeros(5), torch.ones(30), torch.full((15,), 3)]).long()  # class 2 absent
    with torch.no_grad():
        y[:20] = model(x[:20]).argmax(1)          # some hits, whatever the random init predicts
    pc = per_class_accuracy(model, x, y, batch_size=7)
    assert set(pc) == set(torch.unique(y).tolist()) and sum(n for _, n in pc.values()) == 50
    weighted = sum(acc * n for acc, n in pc.values()) / 50
    assert weighted == pytest.approx(evaluate(model, x, y), abs=1e-12)
    pred = model(x).argmax(1)
    for k, (acc, n) in pc.items():
        assert n == int((y == k).sum()) and acc == pytest.approx(float((pred[y == k] == k).float().mean()))
