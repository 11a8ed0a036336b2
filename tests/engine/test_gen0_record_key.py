"""The cached generation-0 record is keyed on what the metrics' values depend on."""

from __future__ import annotations

from types import SimpleNamespace

from scloop.core.config import load_spec
from scloop.runner import _gen0_paths


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
