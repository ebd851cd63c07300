"""Keyed pictures (``suite.contract.Picture.drawn``): drawn once per key, reused on a re-run, drawn
again whenever anything they are drawn from changes (``suite.figures.picture_key``)."""
from __future__ import annotations

from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import torch

from suite.contract import Picture
from suite.contract import picture_key
from suite.figures import figure_rows
from suite.plugin import Recorder
from suite.report.plots import ImageCache


def _rows(v: float = 0.5):
    return {"MoRF": [np.full((1, 4, 4), v), np.zeros((1, 4, 4))]}


@dataclass
class _Result:
    test: str
    maps: np.ndarray


def test_the_key_follows_every_argument_by_value():
    k = picture_key(figure_rows, (_rows(), (0.1, 0.5)), {"title": "t"})
    assert k == picture_key(figure_rows, (_rows(), (0.1, 0.5)), {"title": "t"})   # same values
    assert k != picture_key(figure_rows, (_rows(0.6), (0.1, 0.5)), {"title": "t"})
    assert k != picture_key(figure_rows, (_rows(), (0.1, 0.6)), {"title": "t"})
    assert k != picture_key(figure_rows, (_rows(), (0.1, 0.5)), {"title": "u"})
    a = np.zeros((2, 3), np.float32)
    assert picture_key(figure_rows, (a,), {}) != picture_key(figure_rows, (a.astype(np.float64),), {})
    assert picture_key(figure_rows, (torch.zeros(2, 3),), {}) == picture_key(figure_rows, (a,), {})
    r = _Result("cascading", np.ones((2, 2)))
    assert picture_key(figure_rows, (r,), {}) != picture_key(
        figure_rows, (_Result("cascading", np.zeros((2, 2))),), {})
    assert picture_key(figure_rows, (object(),), {}) is None     # not hashable by value: no key


def _recorder(tmp_path):
    item = SimpleNamespace(nodeid="cases/test_x.py::test_x[a]", user_properties=[])
    return Recorder(item, tmp_path / "report", tmp_path / "pictures"), item


def test_a_keyed_picture_is_drawn_once_and_reused(tmp_path):
    calls = []

    def draw(rows, fractions, **kw):
        calls.append(1)
        return figure_rows(rows, fractions, **kw)

    rec, _ = _recorder(tmp_path)
    first = rec.picture(Picture.drawn("ROAD", draw, _rows(), (0.1, 0.5), title="t"))
    rec2, _ = _recorder(tmp_path)
    second = rec2.picture(Picture.drawn("ROAD", draw, _rows(), (0.1, 0.5), title="t"))
    assert len(calls) == 1
    assert (tmp_path / "report" / first).read_bytes() == (tmp_path / "report" / second).read_bytes()
    assert rec2.data["images"][0]["kind"] == rec.data["images"][0]["kind"]
    # another value: drawn again
    rec3, _ = _recorder(tmp_path)
    rec3.picture(Picture.drawn("ROAD", draw, _rows(0.9), (0.1, 0.5), title="t"))
    assert len(calls) == 2


def test_a_torn_cached_picture_is_drawn_again(tmp_path):
    calls = []

    def draw(rows, fractions):
        calls.append(1)
        return figure_rows(rows, fractions)

    pic = Picture.drawn("ROAD", draw, _rows(), (0.1, 0.5))
    rec, _ = _recorder(tmp_path)
    rec.picture(pic)
    k = ImageCache(tmp_path / "pictures").key(("case picture", pic.key))
    cached = tmp_path / "pictures" / k[:2] / k              # the plugin keeps them in an ImageCache
    cached.write_bytes(cached.read_bytes()[:80])            # torn
    rec2, _ = _recorder(tmp_path)
    rel = rec2.picture(pic)
    assert len(calls) == 2
    from PIL import Image

    with Image.open(tmp_path / "report" / rel) as im:
        im.verify()


def test_a_drawn_figure_and_an_unkeyed_picture_are_never_cached(tmp_path):
    rec, _ = _recorder(tmp_path)
    rec.figure(figure_rows(_rows(), (0.1, 0.5)), "plain")
    rec.picture(Picture.drawn("unkeyed", lambda o: figure_rows(_rows(), (0.1, 0.5)), object()))
    assert not (tmp_path / "pictures").exists() or not list((tmp_path / "pictures").rglob("*"))
    assert len(rec.data["images"]) == 2
