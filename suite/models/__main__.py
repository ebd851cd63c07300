"""``python -m suite.models``: every model, its weights (trained by the suite, or a pretrained
file in torch's hub cache and whether it is present)."""
from __future__ import annotations

from suite.models import pretrained as P
from suite.registry import MODELS
from suite.matrix import load_builtins


def main() -> None:
    load_builtins()
    print(f"{'id':16} {'scales':18} weights")
    for name, spec in MODELS.items():
        if name in P.PRETRAINED:
            p = P.PRETRAINED[name]
            f = P.weights_file(p)
            what = f"{p.weights}: {f} ({'present' if f.is_file() else 'absent; --download fetches it'})"
        else:
            what = "trained by the suite (random init)"
        print(f"{name:16} {','.join(spec.scales):18} {what}")
        if spec.description:
            print(f"{'':16} {spec.description}")


if __name__ == "__main__":
    main()
