"""The cached generation-0 record is keyed on what the metrics' values depend on."""

from __future__ import annotations

from types import SimpleNamespace

from scloop.core.config import load_spec
from scloop.runner.gen0 import _gen0_paths


class _Learned:
    def __init__(self, digest: str) -> None:
        self.digest = digest

    def fingerprint(self) -> str:
        return self.digest


def test_record_key_follows_metric_fingerprints(tmp_path):
    spec = load_spec("gaussian-paper")
    store = SimpleNamespace(path=tmp_path / "runs" / "r")
    npz, plain = _gen0_paths(spec, store, 0)
    npz_a, a = _gen0_paths(spec, store, 0, {"fid": _Learned("net-v2")})
    npz_b, b = _gen0_paths(spec, store, 0, {"fid": _Learned("net-v3")})
    # the model is shared; the record is not, once the feature network changes
    assert npz == npz_a == npz_b
    assert a != b and a != plain
    # metrics without a fingerprint keep the key of the metric names alone
    assert _gen0_paths(spec, store, 0, {"w2": object()})[1] == plain
    assert _gen0_paths(spec, store, 0, {"fid": _Learned("net-v3")})[1] == b


def test_model_cache_version_enters_the_model_key(monkeypatch):
    from scloop.core.registry import MODELS
    from scloop.plugins import load_plugins
    from scloop.runner import gen0_key

    load_plugins()
    spec = load_spec("motion-quick")
    before = gen0_key(spec)
    monkeypatch.setattr(MODELS.get("mdm"), "cache_version", "mdm-test", raising=False)
    assert gen0_key(spec) != before
    # models without a cache_version keep the key they had before versions existed (old caches stay valid)
    import hashlib
    import json

    ddpm = load_spec("digits-quick")
    d = ddpm.to_dict()
    blob = {k: d[k] for k in ("task", "model", "n_real", "seed", "init")}
    old = hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]
    assert getattr(MODELS.get("ddpm"), "cache_version", None) is None and gen0_key(ddpm) == old
