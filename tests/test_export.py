"""Export of attribution maps (``suite.export``): the file holds the cases' maps and their
metadata, comes from the cache on a re-run, never overwrites without force, and bad names are
errors listing what is allowed."""
import json

import numpy as np
import pytest
import torch

from suite import export as E
from suite.artifacts import trained_model
from suite.data import Context, load
from suite.methods import extract, method_params
from suite.specs import TrainSpec
from suite.training import USER_RECIPES


@pytest.fixture
def quick(monkeypatch, tmp_path):
    """digits x simplecnn at smoke scale with a one-epoch recipe (seconds), in a fresh cache."""
    monkeypatch.setitem(USER_RECIPES, ("digits", "simplecnn"),
                        (TrainSpec(epochs=1, lr=0.1, batch_size=128), 0.0))
    return Context(scale="smoke", cache_dir=tmp_path / "cache")


def test_a_case_s_maps_are_read_from_the_cache(quick, tmp_path):
    """A perturbation case's entry (its first N test images, split label test{N}) and a ROAR
    case's (the whole split) are what an export of the same images reads."""
    from suite.methods import extract_cached

    ds = load("digits", quick)
    tm = trained_model(quick, ds, "simplecnn", 0)
    x, y, masks = ds.split("test")
    for split, n in (("test5", 5), ("test", None)):
        sel = x[:n] if n else x
        a, hit = extract_cached(quick.cache, model_key=tm.key, model=tm.model,
                                model_name="simplecnn", method_name="sens_l2", x=sel, split=split,
                                labels=y[:len(sel)], masks=None, seed=0,
                                params=method_params("sens_l2", "smoke"))
        assert not hit
        meta = E.export_maps("digits", "simplecnn", "sens_l2", tmp_path / f"{split}.npz",
                             ctx=quick, n_images=n)
        assert meta["maps_from_cache"] is True and meta["n_images"] == len(sel)
        np.testing.assert_array_equal(E.load_maps(tmp_path / f"{split}.npz")[0]["maps"], a)


def test_export_writes_the_maps_and_their_metadata_then_reads_the_cache(quick, tmp_path):
    out = tmp_path / "maps.npz"
    meta = E.export_maps("digits", "simplecnn", "gradient", out, ctx=quick, n_images=6)
    arrays, read = E.load_maps(out)
    assert read == json.loads(json.dumps(meta))
    ds = load("digits", quick)
    tm = trained_model(quick, ds, "simplecnn", 0)
    x, y, _ = ds.split("test")
    expected = extract(tm.model, "simplecnn", "gradient", x[:6], seed=0,
                       params=method_params("gradient", "smoke"))
    np.testing.assert_array_equal(arrays["maps"], expected)
    assert arrays["maps"].shape == (6, 1, 16, 16) and arrays["maps"].dtype == np.float32
    np.testing.assert_array_equal(arrays["indices"], np.arange(6))
    np.testing.assert_array_equal(arrays["labels"], y[:6].numpy())
    with torch.no_grad():
        np.testing.assert_array_equal(arrays["targets"], tm.model(x[:6]).argmax(1).numpy())
    assert read["model"]["key"] == tm.key and read["model"]["id"] == "simplecnn"
    assert read["method"] == {"id": "gradient", "params": {}, "target": "predicted",
                              "aggregation": "abs_sum",
                              "methods_version": read["method"]["methods_version"]}
    assert read["dataset"]["fingerprint"] == ds.fingerprint and read["n_images"] == 6
    assert read["maps_from_cache"] is False
    # again, elsewhere: the maps (and the model) come from the cache, the same numbers
    again = E.export_maps("digits", "simplecnn", "gradient", tmp_path / "again.npz", ctx=quick,
                          n_images=6)
    assert again["maps_from_cache"] is True and again["model"]["from_cache"] is True
    np.testing.assert_array_equal(E.load_maps(tmp_path / "again.npz")[0]["maps"], expected)


def test_an_existing_file_is_kept_unless_forced(quick, tmp_path):
    out = tmp_path / "maps.npz"
    out.write_bytes(b"mine")
    with pytest.raises(E.ExportError, match=f"{out} exists; pass --force"):
        E.export_maps("digits", "simplecnn", "random", out, ctx=quick, n_images=2)
    assert out.read_bytes() == b"mine"
    E.export_maps("digits", "simplecnn", "random", out, ctx=quick, n_images=2, force=True)
    assert E.load_maps(out)[0]["maps"].shape[0] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "maps.npz"]   # no temp left


@pytest.mark.parametrize("kw,message", [
    (dict(dataset="digitz"), "unknown dataset 'digitz'; allowed: .*digits"),
    (dict(model="simplecn"), "unknown model 'simplecn'; allowed: .*simplecnn"),
    (dict(method="grad"), "unknown method 'grad'; allowed: .*gradient"),
    (dict(model="alexnet_rand"), "model 'alexnet_rand' runs at scale paper, not smoke; at smoke: "
                                 ".*simplecnn"),
    (dict(model="mlp", method="gradcam"), "gradcam needs a convolutional layer.*methods for "
                                          "digits / mlp: .*gradient"),
    (dict(split="val"), "split 'val'; allowed: train, test"),
    (dict(out="maps.npy"), "the output is an .npz file"),
    (dict(params={"n_stepz": 3}, method="intgrad"), "no parameter.*n_stepz.*n_steps"),
])
def test_bad_requests_say_what_is_allowed(quick, tmp_path, kw, message):
    args = dict(dataset="digits", model="simplecnn", method="gradient", out="maps.npz")
    args.update(kw)
    out = tmp_path / args.pop("out")
    with pytest.raises(E.ExportError, match=message):
        E.export_maps(args.pop("dataset"), args.pop("model"), args.pop("method"), out, ctx=quick,
                      **args)
    assert not out.exists()


def test_command_line(quick, tmp_path, capsys):
    out = tmp_path / "cli.npz"
    argv = ["--dataset", "digits", "--model", "simplecnn", "--method", "intgrad", "--split",
            "train", "--out", str(out), "--scale", "smoke", "--n-images", "3", "--param",
            "n_steps=4", "--cache-dir", str(quick.cache_dir)]
    assert E.main(argv) == 0
    arrays, meta = E.load_maps(out)
    assert arrays["maps"].shape == (3, 1, 16, 16) and meta["dataset"]["split"] == "train"
    assert meta["method"]["params"]["n_steps"] == 4 and str(out) in capsys.readouterr().out
    assert E.main(argv) == 2 and "exists; pass --force" in capsys.readouterr().err
    assert E.main(argv[:1] + ["nosuch"] + argv[2:] + ["--force"]) == 2
    assert "unknown dataset 'nosuch'; allowed:" in capsys.readouterr().err


def test_command_line_checkpoint_exports_the_given_weights(quick, tmp_path, capsys):
    from suite import checkpoints
    from suite.models import build_model

    ds = load("digits", quick)
    model = build_model("simplecnn", ds.num_classes, ds.in_shape, seed=7).eval()
    path = tmp_path / "mine.pt"
    torch.save(model.state_dict(), path)
    out = tmp_path / "ckpt.npz"
    try:
        assert E.main(["--dataset", "digits", "--model", "simplecnn", "--method", "gradient",
                       "--out", str(out), "--scale", "smoke", "--n-images", "4", "--cache-dir",
                       str(quick.cache_dir), "--checkpoint", str(path)]) == 0
    finally:
        checkpoints.CHECKPOINTS.clear()
    arrays, meta = E.load_maps(out)
    assert meta["model"]["given"] is True
    x = ds.split("test")[0][:4]
    np.testing.assert_array_equal(arrays["maps"], extract(model, "simplecnn", "gradient", x))
    assert not (quick.cache_dir / "builds.log").exists() or \
        '"models"' not in (quick.cache_dir / "builds.log").read_text()   # nothing trained
