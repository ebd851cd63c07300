"""Unit costs behind the README's small-scale CPU times ("Real datasets at small scale").

``python benchmarks/unit_costs.py`` prints, for ``simplecnn`` with one torch thread, the CPU
seconds (``time.process_time``: other processes sharing the machine inflate wall time, not this)
of training per epoch per 1,000 images with each dataset's small-scale recipe (2 epochs measured),
and of attribution per 1,000 images (200 images measured), on random tensors of the dataset's
shape (the cost does not depend on the pixel values). Not a test: nothing here is asserted.
"""
from __future__ import annotations

import time
from dataclasses import replace

import torch


def main() -> None:
    torch.set_num_threads(1)
    from suite.matrix import load_builtins
    from suite.methods import method_params
    from suite.methods.extract import extract
    from suite.models import build_model
    from suite.training import recipe, train

    load_builtins()
    for ds, shape, n in (("mnist", (1, 28, 28), 2000), ("cifar10", (3, 32, 32), 2000),
                         ("imagenette", (3, 64, 64), 500)):
        spec = replace(recipe(ds, "simplecnn", "small").train, epochs=2)
        gen = torch.Generator().manual_seed(0)
        x, y = torch.rand(n, *shape, generator=gen), torch.randint(0, 10, (n,), generator=gen)
        model = build_model("simplecnn", 10, shape, 0)
        c0 = time.process_time()
        train(spec, model, x, y, seed=0)
        print(f"train {ds} {shape}: {(time.process_time() - c0) / 2 / n * 1000:.2f} CPU s per "
              f"epoch per 1000 images (augment {spec.augment}, batch {spec.batch_size})", flush=True)
        model.eval()
        for method in ("gradient", "intgrad", "vargrad", "guidedbp", "gradcam"):
            c0 = time.process_time()
            extract(model, "simplecnn", method, x[:200], params=method_params(method, "small"), seed=0)
            print(f"  attribution {method}: {(time.process_time() - c0) / 200 * 1000:.2f} CPU s "
                  "per 1000 images", flush=True)


if __name__ == "__main__":
    main()
