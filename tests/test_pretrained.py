"""Pretrained torchvision weights, your own checkpoints and ImageNet-labelled data, offline.

Weights files are planted in a temporary torch hub cache under the weights' exact file name (a
state dict of the right architecture with seeded random values, built locally): the real
torchvision loading path reads them with no network. Their sha256 cannot start with the prefix in
torchvision's file name, so the tests that load them turn ``VERIFY_HASH`` off; the hash check has
its own tests.
"""
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from suite import checkpoints as C
from suite.data.base import Context
from suite.data import imagenet as I
from suite.models import pretrained as P
from suite.matrix import load_builtins

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def alexnet_file(tmp_path_factory):
    """A seeded random AlexNet state dict saved under torchvision's file name."""
    load_builtins()
    hub = tmp_path_factory.mktemp("torch_home")
    f = hub / "hub" / "checkpoints" / P.weights_file(P.PRETRAINED["alexnet_in1k"]).name
    f.parent.mkdir(parents=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        net = torchvision.models.alexnet()
    torch.save(net.state_dict(), f)
    return hub, f, net.eval()


@pytest.fixture
def hub(alexnet_file, monkeypatch):
    home, f, net = alexnet_file
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(P, "VERIFY_HASH", False)
    P._LOADED.clear()
    return f, net


def test_planted_weights_load_through_torchvision_and_normalise_inside(hub):
    f, net = hub
    assert f.name == "alexnet-owt-7be5be79.pth" and P.weights_file(P.PRETRAINED["alexnet_in1k"]) == f
    model, digest = P.load("alexnet_in1k")
    assert digest == P.file_sha256(f)
    for k, v in net.state_dict().items():
        assert torch.equal(model.net.state_dict()[k], v), k
    x = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    mean = torch.tensor([0.485, 0.456, 0.406])[:, None, None]
    std = torch.tensor([0.229, 0.224, 0.225])[:, None, None]
    with torch.no_grad():
        torch.testing.assert_close(model(x), net((x - mean) / std), rtol=1e-5, atol=1e-5)
    assert P.load("alexnet_in1k")[0] is model           # once per process, not once per case
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_normaliser_is_frozen_and_lrp_applies(hub):
    from suite.methods import applies

    model, _ = P.load("alexnet_in1k")
    before = model.normalize.running_mean.clone()
    model.normalize.train()
    model(torch.rand(4, 3, 64, 64))                        # training mode updates nothing
    model.eval()
    assert torch.equal(model.normalize.running_mean, before) and not list(model.normalize.parameters())
    assert applies("lrp_e0p01", "alexnet_in1k", model) is None


def test_wrong_hash_and_truncated_files_are_clear_errors(hub, tmp_path, monkeypatch):
    f, _ = hub
    monkeypatch.setattr(P, "VERIFY_HASH", True)
    with pytest.raises(P.WeightsError, match=r"alexnet-owt-7be5be79\.pth: sha256 .* does not start "
                                             r"with 7be5be79.*truncated or corrupt.*--download"):
        P.load("alexnet_in1k")
    ok = tmp_path / "tiny.bin"
    ok.write_bytes(b"some weights")
    good = tmp_path / f"tiny-{P.file_sha256(ok)[:8]}.pth"
    ok.rename(good)
    assert P.check_hash(good) == P.file_sha256(good)
    # truncated: the first half of the planted file, under the exact name in another hub
    home = tmp_path / "th"
    cut = home / "hub" / "checkpoints" / f.name
    cut.parent.mkdir(parents=True)
    cut.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    monkeypatch.setenv("TORCH_HOME", str(home))
    with pytest.raises(P.WeightsError, match="does not start with 7be5be79"):
        P.load("alexnet_in1k")
    monkeypatch.setattr(P, "VERIFY_HASH", False)
    with pytest.raises(P.WeightsError, match=f"{cut}: cannot be read as a torch state dict"):
        P.load("alexnet_in1k")


def test_absent_weights_say_which_file_where_and_how(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(P.WeightsUnavailable) as e:
        P.load("resnet50_in1k")
    msg = str(e.value)
    assert "resnet50-0676ba61.pth" in msg and str(tmp_path / "hub" / "checkpoints") in msg
    assert "--download" in msg and "https://download.pytorch.org/" in msg and "\n" not in msg


def test_declared_layers_exist_on_the_architectures():
    for p in P.PRETRAINED.values():
        with torch.device("meta"):                         # structure only: no init cost
            m = P.architecture(p, 1000)
        m.get_submodule(p.gradcam_layer)
        for layer in p.layers or ():
            m.get_submodule(layer)


def test_wnids_and_class_maps_match_torchvision_categories():
    from torchvision.datasets.imagenette import Imagenette

    ids = I.wnids()
    assert len(set(ids)) == 1000 and list(ids) == sorted(ids)
    cats = P.PRETRAINED["alexnet_in1k"].enum().meta["categories"]
    assert I.categories() == tuple(cats)
    want = {"tench": 0, "English springer": 217, "cassette player": 482, "chain saw": 491,
            "church": 497, "French horn": 566, "garbage truck": 569, "gas pump": 571,
            "golf ball": 574, "parachute": 701}
    names = {w: n[0] for w, n in Imagenette._WNID_TO_CLASS.items()}   # torchvision's own table
    assert set(names) == set(I.IMAGENETTE_WNIDS)
    for w in I.IMAGENETTE_WNIDS:
        idx = I.wnid_index(w)
        assert cats[idx] == names[w] and want[cats[idx]] == idx
    woof = {"Shih-Tzu", "Rhodesian ridgeback", "beagle", "English foxhound", "Border terrier",
            "Australian terrier", "golden retriever", "Old English sheepdog", "Samoyed", "dingo"}
    assert {cats[I.wnid_index(w)] for w in I.IMAGEWOOF_WNIDS} == woof


def _jpegs(folder: Path, wnid: str, n: int, size=(40, 30), seed=0):
    d = folder / wnid
    d.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(
            d / f"ILSVRC2012_val_{seed:04d}{i:04d}.JPEG", quality=95)


def test_imagenet_val_folder_layout_keeps_true_indices(tmp_path):
    val = tmp_path / "data" / "imagenet" / "val"
    _jpegs(val, "n01440764", 2, seed=1)     # tench, 0
    _jpegs(val, "n15075141", 1, seed=2)     # toilet tissue, 999
    ctx = Context(scale="paper", data_root=tmp_path / "data", cache_dir=tmp_path / "cache")
    ds = I.load_view("imagenet_val", ctx, resize=256, crop=224)
    assert ds.x_test.shape == (3, 3, 224, 224) and len(ds.x_train) == 0
    assert ds.y_test.tolist() == [0, 0, 999] and ds.num_classes == 1000
    assert 0.0 <= float(ds.x_test.min()) and float(ds.x_test.max()) <= 1.0
    # torchvision's own preprocessing before the normalisation
    tf = P.PRETRAINED["alexnet_in1k"].enum().transforms()
    first = sorted((val / "n01440764").iterdir())[0]
    with Image.open(first) as im:
        ref = tf(im.convert("RGB")) * torch.tensor(tf.std)[:, None, None] + torch.tensor(tf.mean)[:, None, None]
    torch.testing.assert_close(ds.x_test[0], ref, atol=1e-5, rtol=0)
    _jpegs(val.parent / "val2" / "notawnid", "x", 1)
    with pytest.raises(I.DatasetUnavailable, match="not an ILSVRC2012 WordNet id"):
        I.wnid_samples(val.parent / "val2")
    with pytest.raises(I.DatasetUnavailable, match="imagenet: ILSVRC2012 validation images not found"):
        I.load_view("imagenet_val", Context(scale="paper", data_root=tmp_path / "none",
                                            cache_dir=tmp_path / "cache"))


def test_imagenette_view_prefers_320_and_maps_labels(tmp_path):
    for px in ("160", "320"):
        _jpegs(tmp_path / "imagenette" / f"imagenette2-{px}" / "val", "n03888257", 1, seed=int(px))
    samples, release = I.fastai_samples("imagenette", tmp_path / "imagenette", "val")
    assert release == "imagenette2-320" and [c for _, c in samples] == [701]
    with pytest.raises(I.DatasetUnavailable, match="imagewoof2-320/val .*imagewoof2-160/val"):
        I.fastai_samples("imagewoof", tmp_path / "imagewoof", "val")


# -- your own checkpoint ---------------------------------------------------------------------

def _digits_model(seed=3):
    from suite.data import load
    from suite.models import build_model

    ds = load("digits", Context(scale="smoke"))
    return ds, build_model("simplecnn", ds.num_classes, ds.in_shape, seed=seed)


def test_checkpoint_round_trip_gives_the_same_logits(tmp_path):
    ds, model = _digits_model()
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    C.validate([("simplecnn", path)])
    try:
        given = C.given_model(Context(scale="smoke", cache_dir=tmp_path / "c"), ds, "simplecnn")
        model.eval()
        with torch.no_grad():
            assert torch.equal(given.model(ds.x_test[:8]), model(ds.x_test[:8]))
        assert C.CHECKPOINTS["simplecnn"][1] in given.key or len(given.key) == 16
        from suite.training import evaluate

        assert given.test_acc == evaluate(model, ds.x_test, ds.y_test)
        # another file, another key (attributions and curves are cached per weights)
        _, other = _digits_model(seed=4)
        torch.save(other.state_dict(), path)
        C.validate([("simplecnn", path)])
        assert C.given_model(Context(scale="smoke"), ds, "simplecnn").key != given.key
    finally:
        C.CHECKPOINTS.clear()


def test_register_model_checkpoint_is_the_api_form_of_the_option(tmp_path, cleanup):
    import suite
    from suite.models.small import SimpleCNN
    from suite.registry import MODELS

    ds, model = _digits_model()
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    try:
        suite.register_model("mynet", checkpoint=path)(lambda n, s: SimpleCNN(n, s))
        assert C.is_given("mynet") and C.CHECKPOINTS["mynet"][0] == path
        given = C.given_model(Context(scale="smoke", cache_dir=tmp_path / "c"), ds, "mynet")
        model.eval()
        with torch.no_grad():
            assert torch.equal(given.model(ds.x_test[:8]), model(ds.x_test[:8]))
        C.validate([])                      # a run without --checkpoint keeps it
        assert "mynet" in C.CHECKPOINTS
        other = tmp_path / "other.pt"
        torch.save(_digits_model(seed=4)[1].state_dict(), other)
        C.validate([("mynet", other)])      # the command line wins
        assert C.CHECKPOINTS["mynet"][0] == other
        # a bad file: an error naming it at registration, and the id stays free
        bad = tmp_path / "bad.pt"
        bad.write_bytes(b"not a torch file")
        with pytest.raises(ValueError, match=f"checkpoint {bad}: corrupt or not a torch file"):
            suite.register_model("yournet", checkpoint=bad)(lambda n, s: SimpleCNN(n, s))
        assert "yournet" not in MODELS
        # re-registered without a checkpoint: trained again, not given
        suite.register_model("mynet", replace=True)(lambda n, s: SimpleCNN(n, s))
        assert not C.is_given("mynet")
    finally:
        C.register("mynet", None)
        C.CHECKPOINTS.clear()


def test_bad_checkpoints_name_the_file_and_the_fault(tmp_path):
    ds, model = _digits_model()
    corrupt = tmp_path / "corrupt.pt"
    torch.save(model.state_dict(), corrupt)
    corrupt.write_bytes(corrupt.read_bytes()[:300])
    with pytest.raises(ValueError, match=f"checkpoint {corrupt}: corrupt or not a torch file"):
        C.read_state_dict(corrupt)
    pickled = tmp_path / "object.pt"
    torch.save(model, pickled)
    with pytest.raises(ValueError, match=f"checkpoint {pickled}: needs code execution.*state_dict"):
        C.read_state_dict(pickled)
    with pytest.raises(ValueError, match="no such file"):
        C.read_state_dict(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match="model 'nosuch' is not registered"):
        C.validate([("nosuch", corrupt)])
    sd = model.state_dict()
    sd.pop("classifier.fc2.bias")
    sd["extra.weight"] = torch.zeros(1)
    sd["features.conv1.weight"] = torch.zeros(16, 3, 3, 3)
    from suite.models import build_model

    with pytest.raises(ValueError, match=r"does not fit the architecture: missing keys "
                                         r"classifier.fc2.bias; unexpected keys extra.weight; shape "
                                         r"mismatch features.conv1.weight: file \(16, 3, 3, 3\)"):
        C.load_into(build_model("simplecnn", 10, ds.in_shape, seed=0), sd, tmp_path / "x.pt")
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="give MODEL=PATH"):
        C.parse_option("simplecnn")


def test_accuracy_bar_is_the_published_figure_minus_stated_margins():
    p = P.PRETRAINED["resnet50_in1k"].enum().meta["_metrics"]["ImageNet-1K"]["acc@1"] / 100
    assert p == pytest.approx(0.7613)
    big = C.accuracy_bar("resnet50_in1k", "imagenet_val", 50_000)
    assert p - 0.01 - 0.006 < big < p - 0.01
    assert C.accuracy_bar("resnet50_in1k", "imagenette", 1000) < big


# -- end to end, as a user runs it -----------------------------------------------------------

CONFTEST = """
pytest_plugins = ["suite.plugin"]
import suite.models.pretrained as P
import suite.metrics.aopc as A
P.VERIFY_HASH = False            # the planted file's sha256 cannot match torchvision's prefix
A.PARAMS["paper"] = {**A.PARAMS["paper"], "n_steps": 3}   # a few steps: seconds on a CPU
"""


def _project(pytester, files=("test_aopc.py", "test_accuracy.py")):
    pytester.makeconftest(CONFTEST)
    (pytester.path / "cases").mkdir()
    for f in files:
        shutil.copy(ROOT / "cases" / f, pytester.path / "cases" / f)
    data = pytester.path / "data"
    _jpegs(data / "imagenette" / "imagenette2-320" / "val", "n01440764", 1, size=(48, 40), seed=5)
    _jpegs(data / "imagenette" / "imagenette2-320" / "val", "n03888257", 1, size=(40, 48), seed=6)
    return data


def _run(pytester, data, *args):
    pytester._monkeypatch.setenv("PYTHONPATH", str(ROOT))   # this checkout's suite/
    return pytester.runpytest_subprocess(
        "cases", "-p", "no:cacheprovider", "--cache-dir", str(pytester.path / "cache"),
        "--data-root", str(data), "--scale", "paper", "--seeds", "1", "-rs", *args)


def test_samek_aopc_on_pretrained_alexnet_end_to_end(pytester, alexnet_file, monkeypatch):
    import json

    data = _project(pytester)
    sel = "aopc and imagenette and alexnet_in1k and (lrp_e0p01 or random)"
    monkeypatch.setenv("TORCH_HOME", str(pytester.path / "empty_home"))
    res = _run(pytester, data, "-k", sel)
    out = res.stdout.str()
    assert res.ret == pytest.ExitCode.OK and "2 skipped" in out
    assert "alexnet-owt-7be5be79.pth not found in the torch hub cache" in out
    monkeypatch.setenv("TORCH_HOME", str(alexnet_file[0]))
    res = _run(pytester, data, "-k", sel)
    assert "2 passed" in res.stdout.str() or "1 passed" in res.stdout.str(), res.stdout.str()
    cases = json.loads((pytester.path / "reports" / "latest" / "results.json").read_text())["cases"]
    assert {c["method"] for c in cases} == {"lrp_e0p01", "random"}
    for c in cases:
        assert c["model"] == "alexnet_in1k" and c["details"]["n_images"] == 2
        assert c["details"]["params"]["n_steps"] == 3 and c["score"] is not None
    builds = [line for line in (pytester.path / "cache" / "builds.log").read_text().splitlines()
              if '"models"' in line]
    assert builds == []                                 # nothing trained


def test_readme_checkpoint_example_is_evaluated_without_training(pytester, tmp_path):
    """The README's save_checkpoint.py, then its --checkpoint command, as a user runs them."""
    import re
    import subprocess
    import sys

    readme = (ROOT / "README.md").read_text()
    body = re.search(r"```python\n(# file: save_checkpoint.py\n.*?)```", readme, re.S).group(1)
    (tmp_path / "save_checkpoint.py").write_text(body)
    subprocess.run([sys.executable, "save_checkpoint.py"], cwd=tmp_path, check=True,
                   env={**__import__("os").environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"})
    path = tmp_path / "my_simplecnn.pt"
    assert "--checkpoint simplecnn=my_simplecnn.pt" in readme
    ds, model = _digits_model()
    data = _project(pytester, files=("test_accuracy.py",))
    res = _run(pytester, data, "--scale", "smoke", "-k", "accuracy and digits and simplecnn",
               "--checkpoint", f"simplecnn={path}")
    assert res.ret == pytest.ExitCode.OK and "1 passed" in res.stdout.str()
    assert not (pytester.path / "cache" / "builds.log").exists() or \
        '"models"' not in (pytester.path / "cache" / "builds.log").read_text()
    shape = tmp_path / "shape.pt"
    sd = model.state_dict()
    sd["classifier.fc2.weight"] = torch.zeros(3, sd["classifier.fc2.weight"].shape[1])
    torch.save(sd, shape)
    res = _run(pytester, data, "--scale", "smoke", "-k", "accuracy and digits and simplecnn",
               "--checkpoint", f"simplecnn={shape}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert f"simplecnn={shape} on digits" in res.stderr.str() and "shape mismatch" in res.stderr.str()


def test_models_listing_says_whether_the_file_is_present(hub, capsys):
    from suite.models.__main__ import main

    main()
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("alexnet_in1k"))
    assert str(hub[0]) in line and "(present)" in line
    assert "resnet50-0676ba61.pth (absent; --download fetches it)" in out
    assert "alexnet_rand" in out and "trained by the suite" in out
