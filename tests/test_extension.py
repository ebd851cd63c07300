"""Bring your own method, model and dataset, exactly as the README says.

The README's examples (the ```python blocks whose first line is ``# file: NAME``) are copied out of
the README into a user project and run against the suite's cases through the public API only, so
the documentation cannot rot.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import suite
from suite import matrix, registry
from suite.methods import AttributionError, NotApplicableError, explain
from suite.registry import RegistryError

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def readme_files() -> dict[str, str]:
    return {name: body for body, name in re.findall(r"```python\n(# file: (\S+)\n.*?)```", README, re.S)}


def test_readme_has_the_three_sections_and_examples():
    for title in ("## Evaluate your own method", "## Use your own model", "## Use your own dataset",
                  "## Add a metric"):
        assert title in README
    assert set(readme_files()) == {"my_saliency.py", "my_model.py", "my_data.py", "my_metric.py",
                                   "test_concentration.py",
                                   "save_checkpoint.py"}   # the last: tests/test_pretrained.py


def test_duplicate_and_colliding_ids_name_the_offender_and_the_fix(cleanup):
    with pytest.raises(RegistryError, match="method id 'gradient' is already registered.*pick another id"):
        suite.register_method("gradient")(lambda model, x, target: x)
    with pytest.raises(RegistryError, match="'smooth' collides with the registered method id 'smoothgrad'"):
        suite.register_method("smooth")(lambda model, x, target: x)
    with pytest.raises(RegistryError, match="'fash' collides with the registered dataset id 'fashion'"):
        suite.register_dataset("fash")(lambda scale, ctx: None)
    with pytest.raises(ValueError, match="aggregation 'mean'.*not one of"):
        suite.register_method("meanmap", aggregation="mean")


@pytest.mark.parametrize("bad,needle", [
    (lambda model, x, target: x[:, :1].repeat(1, 2, 1, 1), "output shape"),
    (lambda model, x, target: torch.full_like(x, float("nan")), "NaN"),
    (lambda model, x, target: x.numpy(), "not a Tensor"),
])
def test_a_bad_method_output_is_an_error_naming_the_method(cleanup, bad, needle):
    suite.register_method("badmethod", needs_gradient=False)(bad)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    with pytest.raises(AttributionError, match=f"'badmethod'.*{needle}|{needle}.*badmethod"):
        explain("badmethod", model, torch.rand(3, 1, 4, 4), torch.zeros(3, dtype=torch.long),
                model_name="usermlp")


def test_a_model_without_a_layer_gets_no_layer_methods(cleanup):
    suite.register_model("nolayer", gradcam_layer=None)(
        lambda num_classes, in_shape: torch.nn.Sequential(torch.nn.Flatten(),
                                                          torch.nn.Linear(in_shape[0] * in_shape[1] * in_shape[2], num_classes)))
    ids = {c.id for c in matrix.cases_for("maps", "smoke")}
    assert "digits-nolayer" in ids
    from suite.registry import DATASETS, METHODS, MODELS
    from suite.matrix import method_applies

    reason = method_applies(METHODS["gradcam"], MODELS["nolayer"], DATASETS["digits"])
    assert reason == "gradcam needs a convolutional layer and nolayer declares none"
    with pytest.raises(NotApplicableError, match="gradcam needs a convolutional layer and model 'nolayer'"):
        explain("gradcam", torch.nn.Flatten(), torch.rand(1, 1, 4, 4), torch.zeros(1, dtype=torch.long),
                model_name="nolayer")


def test_user_project_runs_the_cases_through_the_public_api(tmp_path):
    for name, body in readme_files().items():
        (tmp_path / name).write_text(body)
    selection = ("(edgegrad and simplecnn and digits and (roar or road or aopc)) "
                 "or (stripes and tinynet and (accuracy or maps)) or concentration")
    cmd = [sys.executable, "-m", "pytest", str(ROOT / "cases"), str(tmp_path / "test_concentration.py"),
           "-p", "my_saliency", "-p", "my_model", "-p", "my_data", "-p", "my_metric",
           "--scale", "smoke", "-p", "no:cacheprovider", "-q", "--rootdir", str(ROOT),
           "--cache-dir", str(tmp_path / "cache"), "--report-dir", str(tmp_path / "report"),
           "-k", selection]
    env = {**__import__("os").environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    # exit 1 may be a verdict (the user's method losing to random is a finding); errors are not
    assert proc.returncode in (0, 1), proc.stdout[-4000:] + proc.stderr[-2000:]
    assert " error" not in proc.stdout.splitlines()[-1], proc.stdout[-4000:]
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    mine = {c["metric"]: c for c in results["cases"] if c["method"] == "edgegrad"}
    for metric in ("roar", "road", "aopc"):
        assert metric in mine, f"edgegrad has no {metric} case: {sorted(mine)}"
        case = mine[metric]
        assert case["outcome"] in ("passed", "failed", "xfailed", "xpassed")
        assert case["baseline"]["method"] == "random" and isinstance(case["beats_baseline"], bool)
        assert case["curves"], metric
    acc = [c for c in results["cases"] if (c["metric"], c["dataset"], c["model"]) == ("accuracy", "stripes", "tinynet")]
    assert acc and acc[0]["outcome"] == "passed"
    # the README's toy metric (one module, a three-line case): both its cases ran, through judge
    conc = {c["method"]: c for c in results["cases"] if c["metric"] == "concentration"}
    # its own methods, plus the user's method, which joins every metric it is valid for
    assert sorted(conc) == ["edgegrad", "gradient", "random"], sorted(conc)
    for c in conc.values():
        assert c["outcome"] == "passed" and c["higher_is_better"] is True
        assert c["baseline"]["method"] == "random" and c["details"]["n_images"] == 16
    # a uniform random map: the top 6 of 64 pixels hold about 6 * 0.946 / 32 = 0.18 of the mass
    assert 0.12 < conc["random"]["score"] < 0.25 and conc["random"]["beats_baseline"] is None
    assert conc["gradient"]["baseline"]["score"] == conc["random"]["score"]
    assert results["metrics"]["concentration"]["source"] == "a toy of the README"
    assert results["methods"]["random"]["role"] == "baseline"
    page = (tmp_path / "report" / "index.html").read_text()
    assert "edgegrad" in page and "stripes" in page and "tinynet" in page
