"""The artifact cache: stable keys, atomic writes, checksums, rebuild of corrupted artifacts."""
import json
import warnings

import pytest
import torch

from suite.cache import JSON, NPZ, TORCH, ArtifactCache, CorruptArtifactWarning, spec_key
from suite.specs import TrainSpec


def test_key_is_canonical_and_sensitive():
    assert spec_key({"a": 1, "b": [1, 2]}) == spec_key({"b": [1, 2], "a": 1})
    assert spec_key({"a": 1}) != spec_key({"a": 2})
    assert spec_key({"a": 1}, schema=1) != spec_key({"a": 1}, schema=2)
    assert spec_key(TrainSpec(epochs=3)) != spec_key(TrainSpec(epochs=4))
    with pytest.raises(TypeError, match="cannot put"):
        spec_key({"f": object()})


def test_build_once_then_load(tmp_path):
    cache = ArtifactCache(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return {"w": torch.arange(6.0).reshape(2, 3)}

    first = cache.fetch("models", "m", {"x": 1}, build, TORCH, info=lambda v: {"acc": 0.5})
    second = cache.fetch("models", "m", {"x": 1}, build, TORCH)
    assert (first.from_cache, second.from_cache) == (False, True)
    assert len(calls) == 1
    assert torch.equal(second.value["w"], torch.arange(6.0).reshape(2, 3))
    assert second.meta["info"] == {"acc": 0.5}
    assert [b["name"] for b in cache.builds()] == ["m"]
    # a different spec is a different artifact
    cache.fetch("models", "m", {"x": 2}, build, TORCH)
    assert len(calls) == 2
    # no temp files are left behind
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.parametrize("damage", ["truncate", "flip", "delete_meta", "garbage_meta"])
def test_damaged_artifact_is_rebuilt_never_loaded(tmp_path, damage):
    cache = ArtifactCache(tmp_path)
    value = {"a": __import__("numpy").arange(1000, dtype="float32")}
    fetched = cache.fetch("attributions", "x", {"k": 1}, lambda: value, NPZ)
    art, meta = fetched.path, fetched.path.parent / "meta.json"
    if damage == "truncate":
        art.write_bytes(art.read_bytes()[: art.stat().st_size // 2])
    elif damage == "flip":
        raw = bytearray(art.read_bytes())
        raw[-10] ^= 0xFF
        art.write_bytes(bytes(raw))
    elif damage == "delete_meta":
        meta.unlink()
    else:
        meta.write_text("{not json")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = cache.fetch("attributions", "x", {"k": 1}, lambda: value, NPZ)
    assert again.from_cache is False
    assert (again.value["a"] == value["a"]).all()
    if damage != "delete_meta":
        assert any(issubclass(w.category, CorruptArtifactWarning) for w in caught)
    assert cache.fetch("attributions", "x", {"k": 1}, lambda: value, NPZ).from_cache is True


def test_rebuild_flag_rebuilds_once_per_run(tmp_path):
    ArtifactCache(tmp_path).fetch("k", "n", {}, lambda: {"v": 1}, JSON)
    cache = ArtifactCache(tmp_path, rebuild=True)
    assert cache.fetch("k", "n", {}, lambda: {"v": 2}, JSON).from_cache is False
    assert cache.fetch("k", "n", {}, lambda: {"v": 3}, JSON).value == {"v": 2}


class Evil:
    """Stands for any pickled object that is not plain tensors."""


def test_torch_codec_refuses_pickled_objects(tmp_path):
    """Weights are loaded with weights_only=True: a pickled arbitrary object is refused, even when
    the file's checksums were recomputed to match; the artifact is rebuilt, never unpickled."""
    from suite.cache import file_sha256, meta_checksum

    cache = ArtifactCache(tmp_path)
    fetched = cache.fetch("models", "m", {}, lambda: {"w": torch.zeros(1)}, TORCH)
    torch.save({"w": Evil()}, fetched.path)
    meta = json.loads((fetched.path.parent / "meta.json").read_text())
    meta["sha256"], meta["size"] = file_sha256(fetched.path), fetched.path.stat().st_size
    meta["meta_sha256"] = meta_checksum(meta)
    (fetched.path.parent / "meta.json").write_text(json.dumps(meta))
    with pytest.warns(CorruptArtifactWarning, match="(?i)does not load.*(weights only|weights_only|Unsupported)"):
        again = cache.fetch("models", "m", {}, lambda: {"w": torch.ones(1)}, TORCH)
    assert again.from_cache is False and torch.equal(again.value["w"], torch.ones(1))
    assert torch.equal(torch.load(again.path, weights_only=True)["w"], torch.ones(1))
