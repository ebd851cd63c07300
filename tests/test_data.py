"""Dataset loaders: values, not just shapes.

digits and shapes are embedded; MNIST, Fashion-MNIST, CIFAR-10, Imagenette and image folders are
exercised on tiny files written here in the real on-disk formats (idx files, CIFAR pickles whose
md5 sums are patched into torchvision so its integrity check still runs, JPEG/PNG trees), so
nothing is downloaded. Absent data must raise a one-line ``DatasetUnavailable`` that says what,
where, and ``--download``.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

import suite.data as D
from suite.data import Context, DatasetUnavailable, ImageDataset
from suite.data import shapes as S
from suite.data.base import fingerprint
from suite.registry import DATASETS


@pytest.fixture(autouse=True)
def clear_memo():
    D._MEMO.clear()
    yield
    D._MEMO.clear()


def make_ctx(tmp_path: Path, scale: str = "smoke", **kw) -> Context:
    kw.setdefault("data_root", tmp_path / "data")
    kw.setdefault("cache_dir", tmp_path / "cache")
    return Context(scale=scale, **kw)


def load(name: str, ctx: Context) -> ImageDataset:
    return DATASETS[name].load(ctx.scale, ctx)


def check_unavailable(err: DatasetUnavailable, *words: str) -> str:
    msg = str(err)
    assert "\n" not in msg, f"message is not a single line: {msg!r}"
    for w in words:
        assert w in msg, f"{w!r} missing from {msg!r}"
    return msg


# -- digits -----------------------------------------------------------------------------------

def _bilinear_2x(n_in: int) -> np.ndarray:
    """(2n, n) matrix of bilinear upsampling with half-pixel centres (align_corners=False)."""
    u = np.zeros((2 * n_in, n_in))
    for o in range(2 * n_in):
        src = max((o + 0.5) / 2 - 0.5, 0.0)
        i0 = int(np.floor(src))
        lam = src - i0
        i1 = min(i0 + 1, n_in - 1)
        u[o, i0] += 1 - lam
        u[o, i1] += lam
    return u


@pytest.fixture(scope="module")
def digits():
    return DATASETS["digits"].load("smoke", None)


def test_digits_shapes_types_range(digits):
    ds = digits
    assert ds.name == "digits" and ds.in_shape == (1, 16, 16)
    assert ds.classes == tuple(str(i) for i in range(10)) and ds.num_classes == 10
    assert not ds.has_masks and ds.masks_test is None
    for x, y in ((ds.x_train, ds.y_train), (ds.x_test, ds.y_test)):
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape[1:] == (1, 16, 16) and x.is_contiguous()
        assert float(x.min()) == 0.0 and 0.99 < float(x.max()) <= 1.0
        assert set(y.tolist()) == set(range(10))
    assert len(ds.x_train) + len(ds.x_test) == 1797


def test_digits_stratified_split(digits):
    from sklearn.datasets import load_digits

    counts = np.bincount(load_digits().target, minlength=10)
    n_te = np.bincount(digits.y_test.numpy(), minlength=10)
    n_tr = np.bincount(digits.y_train.numpy(), minlength=10)
    np.testing.assert_array_equal(n_te + n_tr, counts)
    # per class, the test share is 20% up to rounding
    assert np.all(np.abs(n_te - 0.2 * counts) <= 0.5 + 1e-9), (n_te, counts)


def test_digits_values_disjoint_and_covering(digits):
    """Every sklearn digit, upsampled independently here, is in exactly one split, with its label."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    u = _bilinear_2x(8)
    ref = np.einsum("oi,nij,pj->nop", u, bunch.images / 16.0, u).reshape(1797, -1)
    ref = np.clip(ref, 0, 1)
    got = torch.cat([digits.x_train, digits.x_test]).reshape(1797, -1).double()
    labels = torch.cat([digits.y_train, digits.y_test]).numpy()
    dist = torch.cdist(got, torch.from_numpy(ref))
    nearest = dist.argmin(1).numpy()
    assert float(dist.min(1).values.max()) < 1e-5          # every image is a reference image
    assert len(np.unique(nearest)) == 1797                  # ... a different one each time
    np.testing.assert_array_equal(labels, bunch.target[nearest])


def test_digits_deterministic_and_channel_mean(digits):
    again = DATASETS["digits"].load("paper", None)          # the same set at every scale
    assert again.fingerprint == digits.fingerprint and len(digits.fingerprint) == 20
    assert torch.equal(again.x_test, digits.x_test) and torch.equal(again.y_train, digits.y_train)
    cm = digits.channel_mean
    assert cm.shape == (1,)
    assert torch.allclose(cm, digits.x_train.double().mean().float().reshape(1), atol=1e-6)
    assert not torch.allclose(cm, digits.x_test.mean().reshape(1), atol=1e-6)


def test_load_memoises_and_rejects_unknown(tmp_path):
    ctx = make_ctx(tmp_path)
    a = D.load("digits", ctx)
    assert D.load("digits", ctx) is a
    with pytest.raises(KeyError, match="nope"):
        D.load("nope", ctx)


# -- shapes -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def shapes_ds():
    return DATASETS["shapes"].load("smoke", None)


def test_shapes_generate_deterministic_per_seed():
    a = S.generate(48, 32, seed=3)
    b = S.generate(48, 32, seed=3)
    c = S.generate(48, 32, seed=4)
    for u, v in zip(a, b):
        assert np.array_equal(u, v)
    assert not np.array_equal(a[0], c[0]) and not np.array_equal(a[2], c[2])
    assert not np.array_equal(a[1], c[1])
    x, y, m = S.generate(6, 24, seed=0)
    assert x.shape == (6, 3, 24, 24) and x.dtype == np.float32 and y.dtype == np.int64
    assert m.shape == (6, 1, 24, 24) and m.dtype == bool
    for bad in ((0, 32), (4, 15)):
        with pytest.raises(ValueError, match="shapes.generate"):
            S.generate(*bad)


def test_shapes_loader(shapes_ds):
    ds = shapes_ds
    assert ds.classes == S.CLASSES and ds.in_shape == (3, 32, 32) and ds.has_masks
    assert (len(ds.x_train), len(ds.x_test)) == S.SIZES["smoke"]
    assert ds.masks_train.shape == (1500, 1, 32, 32) and ds.masks_train.dtype == torch.bool
    assert float(ds.x_train.min()) >= 0 and float(ds.x_train.max()) <= 1
    # the splits are the head and tail of generate(n_train + n_test, seed=0)
    x, y, m = S.generate(2000, 32, seed=0)
    assert np.array_equal(ds.x_test.numpy(), x[1500:]) and np.array_equal(ds.y_train.numpy(), y[:1500])
    assert np.array_equal(ds.masks_test.numpy(), m[1500:])
    # balanced labels: every class within 15% of its share in the training split and overall.
    # Labels are drawn i.i.d. uniform, so the 500-image test split only gets a binomial bound
    # (4 sigma: 100 +- 36; at seed 0 its counts are 113, 82, 111, 106, 88).
    for yy in (ds.y_train, torch.cat([ds.y_train, ds.y_test])):
        counts = np.bincount(yy.numpy(), minlength=5)
        assert np.all(np.abs(counts - len(yy) / 5) <= 0.15 * len(yy) / 5), counts
    counts = np.bincount(ds.y_test.numpy(), minlength=5)
    assert np.all(np.abs(counts - 100) <= 4 * np.sqrt(500 * 0.2 * 0.8)), counts


def _mask_descriptors(m: np.ndarray) -> np.ndarray:
    """Per mask: bounding-box fill, centroid pixel on the mask, bottom-minus-top share of area."""
    out = []
    for mi in m[:, 0]:
        r, c = np.flatnonzero(mi.any(1)), np.flatnonzero(mi.any(0))
        bb = mi[r[0]:r[-1] + 1, c[0]:c[-1] + 1]
        yy, xx = np.nonzero(mi)
        on_centroid = mi[int(round(yy.mean())), int(round(xx.mean()))]
        h = bb.shape[0]
        out.append((bb.mean(), on_centroid, (bb[h - h // 2:].sum() - bb[:h // 2].sum()) / bb.sum()))
    return np.array(out, dtype=np.float64)


def test_shapes_masks_mark_the_class_object(shapes_ds):
    m = torch.cat([shapes_ds.masks_train, shapes_ds.masks_test]).numpy()
    y = torch.cat([shapes_ds.y_train, shapes_ds.y_test]).numpy()
    x = torch.cat([shapes_ds.x_train, shapes_ds.x_test]).numpy()
    area = m.sum(axis=(1, 2, 3))
    assert area.min() >= 20                       # non-empty: r >= 0.14 * 32
    # inside the image with a margin: no mask touches the border
    assert not (m[..., 0, :].any() or m[..., -1, :].any() or m[..., :, 0].any() or m[..., :, -1].any())
    f = _mask_descriptors(m)
    fill, on_centroid, bottom_heavy = f[:, 0], f[:, 1].astype(bool), f[:, 2]
    sq, ring, tri = y == 2, y == 1, y == 3
    assert np.all(fill[sq] == 1.0) and np.all(fill[~sq] < 0.95)       # squares fill their box
    assert not on_centroid[ring].any() and on_centroid[~ring].all()   # rings have a hole
    assert np.all(bottom_heavy[tri] > 0.3) and np.all(np.abs(bottom_heavy[~tri]) < 0.2)  # apex up
    # the masked pixels are the object: one colour plus faint texture (std 0.04), while the
    # pixels just outside differ more from it than the object varies inside
    in_std = np.array([x[i][:, m[i, 0]].std(1).max() for i in range(len(x))])
    assert in_std.max() < 0.06
    ring_out = np.zeros_like(m[:, 0])
    ring_out[:, 1:-1, 1:-1] = (m[:, 0, :-2, 1:-1] | m[:, 0, 2:, 1:-1] | m[:, 0, 1:-1, :-2]
                               | m[:, 0, 1:-1, 2:]) & ~m[:, 0, 1:-1, 1:-1]
    gap = np.array([np.abs(x[i][:, ring_out[i]].mean(1) - x[i][:, m[i, 0]].mean(1)).max()
                    for i in range(len(x))])
    assert np.median(gap) > 3 * np.median(in_std)


def test_shapes_global_statistics_do_not_tell_the_class(shapes_ds):
    """A linear classifier on per-channel mean/std/min/max stays near chance (0.2), while the same
    classifier on mask-shape descriptors is near perfect (so the check can fail)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def stats(x):
        x = x.numpy()
        return np.concatenate([x.mean((2, 3)), x.std((2, 3)), x.min((2, 3)), x.max((2, 3))], 1)

    ds = shapes_ds
    clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    clf.fit(stats(ds.x_train), ds.y_train.numpy())
    assert clf.score(stats(ds.x_test), ds.y_test.numpy()) < 0.35
    clf.fit(_mask_descriptors(ds.masks_train.numpy()), ds.y_train.numpy())
    assert clf.score(_mask_descriptors(ds.masks_test.numpy()), ds.y_test.numpy()) > 0.9


# -- MNIST / Fashion-MNIST --------------------------------------------------------------------

def write_idx(raw: Path, prefix: str, images: np.ndarray, labels: np.ndarray) -> None:
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    (raw / f"{prefix}-images-idx3-ubyte").write_bytes(
        struct.pack(">IIII", 0x00000803, n, h, w) + images.astype(np.uint8).tobytes())
    (raw / f"{prefix}-labels-idx1-ubyte").write_bytes(
        struct.pack(">II", 0x00000801, n) + labels.astype(np.uint8).tobytes())


def tagged_images(n: int, rng: np.random.Generator) -> np.ndarray:
    """Random 28x28 uint8 images whose first two pixels encode their index."""
    x = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    x[:, 0, 0], x[:, 0, 1] = np.arange(n) // 256, np.arange(n) % 256
    return x


MNIST_LIKE = [("mnist", "MNIST"), ("fashion", "FashionMNIST")]


@pytest.fixture(scope="module")
def mnist_files(tmp_path_factory):
    """Both MNIST-like roots: 2100 train images (more than smoke's 2000), 7 test images."""
    rng = np.random.default_rng(5)
    root = tmp_path_factory.mktemp("mnist_data")
    files = {}
    for name, folder in MNIST_LIKE:
        tr_x, te_x = tagged_images(2100, rng), tagged_images(7, rng)
        tr_y, te_y = rng.integers(0, 10, 2100), rng.integers(0, 10, 7)
        write_idx(root / name / folder / "raw", "train", tr_x, tr_y)
        write_idx(root / name / folder / "raw", "t10k", te_x, te_y)
        files[name] = (tr_x, tr_y, te_x, te_y)
    return root, files


@pytest.mark.parametrize("name,tv_class", MNIST_LIKE)
def test_mnist_like_paper_reads_every_value(tmp_path, mnist_files, name, tv_class):
    import torchvision

    root, files = mnist_files
    tr_x, tr_y, te_x, te_y = files[name]
    ds = load(name, make_ctx(tmp_path, "paper", data_root=root))
    assert ds.name == name and ds.in_shape == (1, 28, 28)
    assert ds.classes == tuple(getattr(torchvision.datasets, tv_class).classes) and ds.num_classes == 10
    assert ds.x_train.shape == (2100, 1, 28, 28) and ds.x_test.shape == (7, 1, 28, 28)
    assert ds.x_train.dtype == torch.float32 and ds.y_train.dtype == torch.int64
    np.testing.assert_array_equal(ds.x_train.numpy()[:, 0], tr_x.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.x_test.numpy()[:, 0], te_x.astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y_train.numpy(), tr_y)
    np.testing.assert_array_equal(ds.y_test.numpy(), te_y)
    assert float(ds.x_train.max()) == 1.0 and float(ds.x_train.min()) == 0.0


@pytest.mark.parametrize("name", [n for n, _ in MNIST_LIKE])
def test_mnist_like_smoke_takes_a_subset(tmp_path, mnist_files, name):
    root, files = mnist_files
    tr_x, tr_y, te_x, te_y = files[name]
    ds = load(name, make_ctx(tmp_path, "smoke", data_root=root))
    assert len(ds.x_train) == 2000 and len(ds.x_test) == 7      # 2100 > 2000; 7 < 500: all
    x = np.rint(ds.x_train.numpy()[:, 0] * 255).astype(np.int64)
    idx = x[:, 0, 0] * 256 + x[:, 0, 1]
    assert np.all(np.diff(idx) > 0) and idx.max() < 2100            # distinct rows, file order
    np.testing.assert_array_equal(ds.x_train.numpy()[:, 0], tr_x[idx].astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.y_train.numpy(), tr_y[idx])
    np.testing.assert_array_equal(ds.y_test.numpy(), te_y)
    again = load(name, make_ctx(tmp_path, "smoke", data_root=root))
    assert again.fingerprint == ds.fingerprint
    small = load(name, make_ctx(tmp_path, "small", data_root=root))  # 10000 > 2100: all
    assert len(small.x_train) == 2100


# -- CIFAR-10 ---------------------------------------------------------------------------------

CIFAR_NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def cifar_root(tmp_path, monkeypatch):
    """A cifar-10-batches-py folder: 5 train batches of 3 images, a test batch of 4, the meta."""
    import torchvision

    rng = np.random.default_rng(7)
    root = tmp_path / "data"
    folder = root / "cifar10" / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {}
    for fname, n in [(f"data_batch_{i}", 3) for i in range(1, 6)] + [("test_batch", 4)]:
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, n)]
        entry = {"batch_label": f"fake {fname}", "labels": labels, "data": data,
                 "filenames": [f"img_{fname}_{i}.png" for i in range(n)]}
        (folder / fname).write_bytes(pickle.dumps(entry, protocol=2))
        batches[fname] = (data, labels)
    meta = {"num_cases_per_batch": 3, "label_names": CIFAR_NAMES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    cls = torchvision.datasets.CIFAR10
    monkeypatch.setattr(cls, "train_list", [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")]
                                            for i in range(1, 6)])
    monkeypatch.setattr(cls, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    monkeypatch.setattr(cls, "meta", {"filename": "batches.meta", "key": "label_names",
                                      "md5": _md5(folder / "batches.meta")})
    return root, folder, batches


def test_cifar10_values_and_labels(tmp_path, cifar_root):
    root, _, batches = cifar_root
    ds = load("cifar10", make_ctx(tmp_path, "paper", data_root=root))
    assert ds.name == "cifar10" and ds.classes == tuple(CIFAR_NAMES) and ds.in_shape == (3, 32, 32)
    tr_data = np.concatenate([batches[f"data_batch_{i}"][0] for i in range(1, 6)])
    tr_labels = sum((batches[f"data_batch_{i}"][1] for i in range(1, 6)), [])
    te_data, te_labels = batches["test_batch"]
    assert ds.x_train.shape == (15, 3, 32, 32) and ds.x_test.shape == (4, 3, 32, 32)
    # a CIFAR row is 1024 red, 1024 green, 1024 blue values, each a row-major 32x32 plane
    n, c, h, w = 4, 1, 2, 29
    assert float(ds.x_train[n, c, h, w]) == np.float32(tr_data[n, c * 1024 + h * 32 + w]) / np.float32(255)
    np.testing.assert_array_equal(ds.x_train.numpy(),
                                  tr_data.reshape(15, 3, 32, 32).astype(np.float32) / np.float32(255))
    np.testing.assert_array_equal(ds.x_test.numpy(),
                                  te_data.reshape(4, 3, 32, 32).astype(np.float32) / np.float32(255))
    assert ds.y_train.tolist() == tr_labels and ds.y_test.tolist() == te_labels
    assert ds.y_train.dtype == torch.int64
    smoke = load("cifar10", make_ctx(tmp_path, "smoke", data_root=root))   # fewer than 2000: all
    assert smoke.fingerprint == ds.fingerprint


def test_cifar10_corrupt_file_is_unavailable(tmp_path, cifar_root):
    """The md5 check still runs: a changed batch reads as unavailable, not as data."""
    root, folder, _ = cifar_root
    raw = bytearray((folder / "data_batch_3").read_bytes())
    raw[-20] ^= 0xFF
    (folder / "data_batch_3").write_bytes(bytes(raw))
    with pytest.raises(DatasetUnavailable) as err:
        load("cifar10", make_ctx(tmp_path, "paper", data_root=root))
    check_unavailable(err.value, "cifar10", str(root / "cifar10"), "--download")


# -- image files ------------------------------------------------------------------------------

def colour_of(cls: int, i: int) -> tuple[int, int, int]:
    """A colour that identifies (class, index)."""
    return (40 + 60 * cls, 10 + 7 * i, 200 - 30 * cls)


def identify(x: torch.Tensor, tol: float) -> list[tuple[int, int]]:
    """The (class, index) of each decoded image, which must be uniform in colour."""
    out = []
    for img in x.numpy():
        rgb = img.reshape(3, -1)
        assert np.ptp(rgb, axis=1).max() <= tol, "decoded image is not uniform"
        r, g, b = np.rint(rgb.mean(1) * 255).astype(int)
        cls = int(round((r - 40) / 60))
        out.append((cls, int(round((g - 10) / 7))))
        assert abs(b - (200 - 30 * cls)) <= tol * 255 + 1
    return out


def write_image(path: Path, colour, size=(12, 9), fmt="PNG", **kw) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, fmt, **kw)


def write_tree(root: Path, classes: list[str], counts: list[int], ext="png", fmt="PNG",
               size=(12, 9), **kw) -> None:
    for k, (name, n) in enumerate(zip(classes, counts)):
        for i in range(n):
            write_image(root / name / f"img{i:03d}.{ext}", colour_of(k, i), size, fmt, **kw)


def test_folder_with_train_and_val(tmp_path):
    root = tmp_path / "imgs"
    write_tree(root / "train", ["cat", "dog", "eel"], [4, 3, 2])
    write_tree(root / "val", ["cat", "dog", "eel"], [2, 1, 1], size=(5, 7))
    ctx = make_ctx(tmp_path, image_folder=root, image_size=8)
    ds = load("folder", ctx)
    assert ds.name == "folder" and ds.classes == ("cat", "dog", "eel") and ds.in_shape == (3, 8, 8)
    assert (len(ds.x_train), len(ds.x_test)) == (9, 4)
    for x, y, want in ((ds.x_train, ds.y_train, [4, 3, 2]), (ds.x_test, ds.y_test, [2, 1, 1])):
        ids = identify(x, tol=0.0)                            # uniform colours resize exactly
        assert sorted(ids) == [(k, i) for k, n in enumerate(want) for i in range(n)]
        assert y.tolist() == [k for k, _ in ids]
        assert y.dtype == torch.int64


def test_folder_flat_is_split_80_20(tmp_path):
    root = tmp_path / "flat"
    write_tree(root, ["a", "b"], [10, 5])
    ds = load("folder", make_ctx(tmp_path, image_folder=root, image_size=6))
    assert ds.classes == ("a", "b") and ds.in_shape == (3, 6, 6)
    tr, te = identify(ds.x_train, 0.0), identify(ds.x_test, 0.0)
    assert np.bincount(ds.y_test.numpy()).tolist() == [2, 1]
    assert np.bincount(ds.y_train.numpy()).tolist() == [8, 4]
    assert not set(tr) & set(te)
    assert sorted(tr + te) == [(0, i) for i in range(10)] + [(1, i) for i in range(5)]
    assert ds.y_train.tolist() == [k for k, _ in tr] and ds.y_test.tolist() == [k for k, _ in te]


def test_folder_resizes_shorter_side_and_crops_centre(tmp_path):
    """Wide and tall images whose outer parts are red: the shorter side is resized to the target
    (the aspect is kept) and the centre crop keeps only the green middle (a squash would not)."""
    from PIL import Image

    root = tmp_path / "crop"
    write_tree(root, ["a", "b"], [3, 2], size=(4, 4))
    side = 8
    wide = Image.new("RGB", (2 * side, side), (255, 0, 0))             # no resize, crop only
    wide.paste((0, 255, 0), (side // 2, 0, side // 2 + side, side))
    wide.save(root / "a" / "wide.png")
    tall = Image.new("RGB", (2 * side, 4 * side), (255, 0, 0))         # halved, then cropped;
    tall.paste((0, 255, 0), (0, 6, 2 * side, 4 * side - 6))            # 2 spare rows for the filter
    tall.save(root / "b" / "tall.png")
    ds = load("folder", make_ctx(tmp_path, "paper", image_folder=root, image_size=side))
    x = torch.cat([ds.x_train, ds.x_test])
    assert x.shape == (len(ds.y_train) + len(ds.y_test), 3, side, side)
    green = [img for img in x if float(img[1].min()) == 1.0]
    assert len(green) == 2                                  # both: only the green middle survives
    for img in green:
        assert float(img[0].max()) == 0.0 and float(img[2].max()) == 0.0


def test_folder_decoded_tensors_are_cached(tmp_path):
    root = tmp_path / "imgs"
    write_tree(root, ["a", "b"], [5, 5])
    ctx = make_ctx(tmp_path, image_folder=root, image_size=8)
    first = load("folder", ctx)
    n_builds = len(ctx.cache.builds())
    assert n_builds == 2 and {b["name"] for b in ctx.cache.builds()} == {"folder-train", "folder-test"}
    again = load("folder", make_ctx(tmp_path, image_folder=root, image_size=8))   # fresh context
    assert len(ctx.cache.builds()) == n_builds
    assert again.fingerprint == first.fingerprint and torch.equal(again.x_test, first.x_test)
    load("folder", make_ctx(tmp_path, image_folder=root, image_size=6))           # another size
    assert len(ctx.cache.builds()) == n_builds + 2


def test_folder_cache_sees_an_edited_file(tmp_path):
    """Rewriting an image (same size, same second) must not serve the stale decoded tensor."""
    root = tmp_path / "imgs"
    write_tree(root, ["a", "b"], [3, 3])
    files = sorted(root.rglob("*.png"))
    t0 = 1_700_000_000 * 10**9 + 100_000_000
    for f in files:
        os.utime(f, ns=(t0, t0))
    first = load("folder", make_ctx(tmp_path, image_folder=root, image_size=4))
    target = files[0]
    size = target.stat().st_size
    write_image(target, (7, 7, 7))
    assert target.stat().st_size == size
    os.utime(target, ns=(t0 + 500_000_000, t0 + 500_000_000))
    if target.stat().st_mtime_ns != t0 + 500_000_000:
        pytest.skip("this filesystem keeps modification times to the second only")
    second = load("folder", make_ctx(tmp_path, image_folder=root, image_size=4))
    both = torch.cat([second.x_train, second.x_test])
    assert any(float((img - 7 / 255).abs().max()) < 1e-6 for img in both)
    assert second.fingerprint != first.fingerprint


def test_folder_errors(tmp_path):
    with pytest.raises(DatasetUnavailable) as err:
        load("folder", make_ctx(tmp_path, image_folder=None))
    check_unavailable(err.value, "folder", "--image-folder")
    missing = tmp_path / "nowhere"
    with pytest.raises(DatasetUnavailable) as err:
        load("folder", make_ctx(tmp_path, image_folder=missing))
    check_unavailable(err.value, str(missing), "--image-folder")
    one = tmp_path / "one"
    write_tree(one, ["only"], [4])
    with pytest.raises(DatasetUnavailable) as err:
        load("folder", make_ctx(tmp_path, image_folder=one))
    check_unavailable(err.value, str(one), "1 class")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetUnavailable) as err:
        load("folder", make_ctx(tmp_path, image_folder=empty))
    check_unavailable(err.value, str(empty))
    odd = tmp_path / "odd"
    write_tree(odd / "train", ["a", "b"], [2, 2])
    write_tree(odd / "val", ["a", "c"], [1, 1])
    with pytest.raises(DatasetUnavailable) as err:
        load("folder", make_ctx(tmp_path, image_folder=odd))
    check_unavailable(err.value, "differ")


# -- Imagenette -------------------------------------------------------------------------------

WNIDS = ("n01440764", "n02102040")          # tench, English springer (in torchvision's table)


def test_imagenette_tiny_tree(tmp_path):
    root = tmp_path / "data"
    base = root / "imagenette" / "imagenette2-160"
    # torchvision's Imagenette lists <split>/<wnid>/*.JPEG and sorts the wnids
    write_tree(base / "train", list(WNIDS), [3, 2], ext="JPEG", fmt="JPEG", size=(48, 36), quality=95)
    write_tree(base / "val", list(WNIDS), [1, 2], ext="JPEG", fmt="JPEG", size=(36, 48), quality=95)
    ctx = make_ctx(tmp_path, "smoke", data_root=root)
    ds = load("imagenette", ctx)
    assert ds.classes == ("tench", "English springer") and ds.in_shape == (3, 64, 64)
    assert (len(ds.x_train), len(ds.x_test)) == (5, 3)
    for x, y, want in ((ds.x_train, ds.y_train, [3, 2]), (ds.x_test, ds.y_test, [1, 2])):
        ids = identify(x, tol=3 / 255)                      # JPEG: within a few levels
        assert sorted(ids) == [(k, i) for k, n in enumerate(want) for i in range(n)]
        assert y.tolist() == [k for k, _ in ids]
    n_builds = len(ctx.cache.builds())
    assert n_builds == 2
    paper = load("imagenette", make_ctx(tmp_path, "paper", data_root=root))
    assert paper.in_shape == (3, 128, 128)
    assert len(ctx.cache.builds()) == n_builds + 2
    load("imagenette", make_ctx(tmp_path, "smoke", data_root=root))
    assert len(ctx.cache.builds()) == n_builds + 2


# -- absent data ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mnist", "fashion", "cifar10", "imagenette"])
def test_absent_data_is_unavailable(tmp_path, name):
    root = tmp_path / "empty_root"
    root.mkdir()
    with pytest.raises(DatasetUnavailable) as err:
        load(name, make_ctx(tmp_path, data_root=root))
    check_unavailable(err.value, f"{name}:", str(root / name), "--download", "--data-root")
    assert list(root.iterdir()) == []                      # nothing fetched, nothing created
    with pytest.raises(DatasetUnavailable):                # through the memoising entry point too
        D.load(name, make_ctx(tmp_path, data_root=root))


# -- ImageDataset validation ------------------------------------------------------------------

def _parts(n=4, c=1, h=5, w=5, k=3):
    g = torch.Generator().manual_seed(0)
    return dict(x_train=torch.rand(n, c, h, w, generator=g), y_train=torch.arange(n) % k,
                x_test=torch.rand(2, c, h, w, generator=g), y_test=torch.tensor([0, k - 1]),
                classes=tuple("abc"[:k]))


def make_ds(**over):
    parts = _parts()
    parts.update(over)
    return ImageDataset("toy", **parts)


def test_image_dataset_accepts_valid_and_fingerprints():
    ds = make_ds(masks_train=torch.zeros(4, 1, 5, 5, dtype=torch.bool),
                 masks_test=torch.ones(2, 1, 5, 5, dtype=torch.bool))
    assert ds.in_shape == (1, 5, 5) and ds.num_classes == 3 and ds.has_masks
    x, y, m = ds.split("test")
    assert x is ds.x_test and y is ds.y_test and m is ds.masks_test
    with pytest.raises(ValueError, match="split"):
        ds.split("val")
    assert ds.fingerprint == fingerprint(ds.x_train, ds.y_train, ds.x_test, ds.y_test,
                                         ds.masks_train, ds.masks_test)
    x2 = ds.x_train.clone()
    x2[0, 0, 0, 0] = 0.5 if float(x2[0, 0, 0, 0]) != 0.5 else 0.25
    assert make_ds(x_train=x2).fingerprint != make_ds().fingerprint
    assert make_ds().fingerprint == make_ds().fingerprint
    assert make_ds(fingerprint="given").fingerprint == "given"


@pytest.mark.parametrize("field,value", [
    ("x_train", torch.rand(4, 1, 5, 5, dtype=torch.float64)),
    ("x_test", torch.rand(2, 5, 5)),                               # 3-d
    ("x_train", torch.full((4, 1, 5, 5), 1.5)),                   # > 1
    ("x_test", torch.full((2, 1, 5, 5), -0.1)),                   # < 0
    ("y_train", torch.zeros(4, dtype=torch.int32)),
    ("y_test", torch.zeros(3, dtype=torch.int64)),                # wrong length
    ("y_train", torch.tensor([0, 1, 2, 3])),                      # label 3 with 3 classes
    ("y_test", torch.tensor([-1, 0])),
    ("masks_train", torch.zeros(4, 1, 4, 5, dtype=torch.bool)),   # mask shape
    ("masks_test", torch.zeros(2, 3, 5, 5, dtype=torch.bool)),    # one channel only
    ("masks_train", torch.zeros(4, 1, 5, 5, dtype=torch.uint8)),  # dtype
])
def test_image_dataset_rejects(field, value):
    with pytest.raises(ValueError, match=field):
        make_ds(**{field: value})


def test_image_dataset_rejects_mismatched_splits():
    with pytest.raises(ValueError, match="differ in shape"):
        make_ds(x_test=torch.rand(2, 1, 6, 5), y_test=torch.tensor([0, 1]))
