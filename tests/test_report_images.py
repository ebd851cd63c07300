"""The report's image coding and its cache (issue 20 item 7): lossy coding only for raster
pictures, drawn images reused only for the same input, the same bytes for the same input."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image

from suite.report import render
from suite.report.plots import (ImageCache, compact_image, figure_rgb, is_raster, looks_raster,
                                png_bytes)


def webp_kind(data: bytes) -> str:
    """``"lossy"`` (a VP8 bitstream) or ``"lossless"`` (VP8L) of a simple WebP file."""
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    return {b"VP8 ": "lossy", b"VP8L": "lossless"}[data[12:16]]


def photo(seed: int = 0, size=(240, 160)) -> Image.Image:
    """A smooth photographic-like picture (gradients and mild noise): lossy WebP is much smaller
    than lossless on it."""
    rng = np.random.default_rng(seed)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
    rgb = np.stack([np.sin(3 * xx + seed), np.cos(4 * yy), np.sin(2 * (xx + yy))], -1)
    rgb = (rgb + 1) / 2 * 200 + rng.normal(0, 6, (h, w, 3)) + 20
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), "RGB")


def line_plot() -> Figure:
    fig = Figure(figsize=(3, 2), dpi=80)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([0, 1, 2, 3], [0, 1, 0.5, 2], color="#0072B2")
    ax.set_title("a plot")
    return fig


def raster_figure(seed: int = 0) -> Figure:
    fig = Figure(figsize=(3, 2), dpi=80)
    FigureCanvasAgg(fig)
    fig.add_axes((0, 0, 1, 1)).imshow(np.asarray(photo(seed, (60, 40))), interpolation="nearest")
    return fig


def case(nodeid, method, score, **kw):
    c = {"nodeid": nodeid, "metric": "roar", "dataset": "digits", "model": "simplecnn",
         "method": method, "outcome": "passed", "duration_s": 1.0, "score": score,
         "higher_is_better": False, "baseline": None, "beats_baseline": None, "curves": [],
         "details": {}}
    c.update(kw)
    return c


def results_of(*cases):
    return {"schema": 1, "run": {"started": "2024-01-01T00:00:00", "scale": "small"},
            "cases": list(cases)}


def curve(y):
    return [{"label": "MoRF", "x": [0.0, 0.5, 1.0], "y": y, "x_label": "fraction",
             "y_label": "accuracy"}]


def embedded(page: str) -> list[bytes]:
    import re

    return [base64.b64decode(d) for d in re.findall(r'src="data:image/webp;base64,([^"]+)"', page)]


def test_compact_image_lossy_only_when_asked_and_smaller():
    im = photo()
    lossless = compact_image(im)[1]
    assert webp_kind(lossless) == "lossless"
    mime, small = compact_image(im, lossy=80)
    assert mime == "image/webp" and webp_kind(small) == "lossy" and len(small) < len(lossless)
    with Image.open(io.BytesIO(small)) as shown:     # close to the picture, not equal
        diff = np.abs(np.asarray(shown.convert("RGB"), float) - np.asarray(im, float))
        assert 0 < diff.mean() < 8
    flat = Image.new("RGB", (120, 80), (30, 60, 200))  # lossless is smaller here: it is kept
    assert webp_kind(compact_image(flat, lossy=80)[1]) == "lossless"
    pal = im.quantize(256)                          # a 256-colour palette image: kept exactly
    with Image.open(io.BytesIO(compact_image(pal)[1])) as shown:
        assert shown.convert("RGB").tobytes() == pal.convert("RGB").tobytes()


def test_page_codes_raster_pictures_lossy_and_plots_lossless(tmp_path):
    (tmp_path / "assets").mkdir()
    photo().save(tmp_path / "assets" / "r.png")
    photo().quantize(256).save(tmp_path / "assets" / "p.png")   # a palette PNG, as png_bytes saves
    cases = [case("a", "grad", 0.1, curves=curve([1.0, 0.5, 0.2]),
                  images=[{"title": "raster", "file": "assets/r.png", "kind": "raster"},
                          {"title": "plot", "file": "assets/p.png", "kind": "plot"}]),
             case("b", "intgrad", 0.2, curves=curve([1.0, 0.6, 0.3]))]
    page = render(results_of(*cases), tmp_path).read_text()
    import re

    pics = {alt: base64.b64decode(data) for data, alt in re.findall(
        r'<figure class="pic[^"]*"><img src="data:image/webp;base64,([^"]+)" alt="([^"]+)"', page)}
    assert webp_kind(pics["raster"]) == "lossy"
    assert webp_kind(pics["plot"]) == "lossless"
    with Image.open(io.BytesIO(pics["plot"])) as shown, \
            Image.open(tmp_path / "assets" / "p.png") as original:
        assert shown.convert("RGB").tobytes() == original.convert("RGB").tobytes()
    curves = [base64.b64decode(d) for d in re.findall(
        r'<figure class="plot"><img src="data:image/webp;base64,([^"]+)"', page)]
    assert len(curves) == 1 and webp_kind(curves[0]) == "lossless"   # the small multiples

    both = [dict(cases[0], images=cases[0]["images"][:1]),           # a stack of a raster and
            dict(cases[1], images=cases[0]["images"][1:])]           # a plot: lossless
    stacked = embedded(render(results_of(*both), tmp_path).read_text())
    assert len(stacked) == 2 and [webp_kind(d) for d in stacked] == ["lossless", "lossless"]


def test_records_without_kind_classified_by_their_pixels(tmp_path):
    plot = Image.open(io.BytesIO(png_bytes(line_plot())))
    assert not looks_raster(plot) and looks_raster(photo())
    (tmp_path / "assets").mkdir()
    plot.save(tmp_path / "assets" / "plot.png")
    photo().save(tmp_path / "assets" / "r.png")
    c = case("a", "grad", 0.1, images=[{"title": "old plot", "file": "assets/plot.png"},
                                       {"title": "old raster", "file": "assets/r.png"}])
    kinds = [webp_kind(d) for d in embedded(render(results_of(c), tmp_path).read_text())]
    assert kinds == ["lossless", "lossy"]


def test_figure_kind_and_rgba_buffer_equal_to_the_png_round_trip():
    assert is_raster(raster_figure()) and not is_raster(line_plot())
    for fig in (line_plot(), raster_figure()):
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80, bbox_inches="tight")
        with Image.open(buf) as ref:
            expected = ref.convert("RGB")
        got = figure_rgb(fig, dpi=80, bbox_inches="tight")
        assert got.size == expected.size and got.tobytes() == expected.tobytes()
    assert png_bytes(line_plot()) == png_bytes(line_plot())      # deterministic


def test_cache_reuses_only_the_same_input(tmp_path):
    cache = tmp_path / "cache"
    out = tmp_path / "r"
    (out / "assets").mkdir(parents=True)
    photo(0).save(out / "assets" / "x.png")
    cases = [case("a", "grad", 0.1, curves=curve([1.0, 0.5, 0.2]),
                  images=[{"title": "t", "file": "assets/x.png", "kind": "raster"}]),
             case("b", "random", 0.4, curves=curve([1.0, 0.9, 0.8]))]
    fresh = render(results_of(*cases), out).read_bytes()           # no cache
    first = render(results_of(*cases), out, image_cache=cache).read_bytes()
    stored = sorted(p.name for p in cache.rglob("*") if p.is_file())
    assert len(stored) == 2                                          # the multiples, the picture
    again = render(results_of(*cases), out, image_cache=cache).read_bytes()
    assert fresh == first == again                                   # same input, same bytes
    assert sorted(p.name for p in cache.rglob("*") if p.is_file()) == stored

    changed = [dict(cases[0], curves=curve([1.0, 0.4, 0.2])), cases[1]]   # one value moved
    with_cache = render(results_of(*changed), out, image_cache=cache).read_bytes()
    assert with_cache != first
    assert with_cache == render(results_of(*changed), out).read_bytes()   # = drawn afresh

    photo(1).save(out / "assets" / "x.png")          # the same file name, other pixels
    with_cache = render(results_of(*cases), out, image_cache=cache).read_text()
    assert with_cache.encode() != first
    assert with_cache == render(results_of(*cases), out).read_text()


def test_cache_key_covers_input_and_code_and_survives_a_bad_entry(tmp_path):
    cache = ImageCache(tmp_path)
    assert cache.key(("m", [1.0, 2.0])) != cache.key(("m", [1.0, 2.000001]))
    assert cache.key(("m", [1.0])) == ImageCache(tmp_path).key(("m", [1.0]))
    calls = []

    def draw():
        calls.append(1)
        return "image/webp", b"drawn"

    assert cache.get("k", draw) == ("image/webp", b"drawn")
    assert cache.get("k", draw) == ("image/webp", b"drawn") and len(calls) == 1
    key = cache.key("k")
    (tmp_path / key[:2] / key).write_bytes(b"garbage")              # a damaged entry: redrawn
    assert cache.get("k", draw) == ("image/webp", b"drawn") and len(calls) == 2
    assert ImageCache(None).get("k", draw) == ("image/webp", b"drawn") and len(calls) == 3


@pytest.mark.parametrize("make", [line_plot, raster_figure])
def test_page_images_are_deterministic(make):
    from suite.report.plots import figure_image

    assert figure_image(make()) == figure_image(make())
    assert compact_image(photo(), lossy=80) == compact_image(photo(), lossy=80)
