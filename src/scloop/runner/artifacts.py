"""What a run keeps besides its records: sample grids for the report, unit checkpoints, the
shared cache directory, and the record row format of the store."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.core.config import ExperimentSpec
from scloop.core.types import Data, GenerationRecord
from scloop.store.atomic import load_npz, save_npz
from scloop.store.run_store import RunStore


GRID_PER_CLASS = 10  # images per class kept for the per-generation grid
MOTION_PER_CLASS = 2  # motion windows per class kept for the stick-figure GIFs
TEXT_SAMPLES = 8  # generated strings kept per generation for the report


def _grid_arrays(samples: Data | None) -> dict[str, np.ndarray] | None:
    """A few generated samples of a generation for the report: up to 10 images per class
    (uint8, a few kB; rows = classes of the image grid) or up to 2 motion windows per class
    (float16 (k, T, F), ~0.2 MB for 4 actions; the stick-figure GIFs of
    :mod:`scloop.report.motion`); None for other data."""
    if samples is not None and len(samples) and samples.x.dtype.kind == "U":
        return {"text": samples.x[:TEXT_SAMPLES]}  # strings (fixed-width unicode): the report's table
    if samples is None or samples.y is None or len(samples) == 0 or samples.x.ndim not in (3, 4):
        return None
    per = GRID_PER_CLASS if samples.x.ndim == 4 else MOTION_PER_CLASS
    keep = np.concatenate([np.flatnonzero(samples.y == c)[:per] for c in np.unique(samples.y)])
    if samples.x.ndim == 3:
        return {"x": samples.x[keep].astype(np.float16), "y": samples.y[keep]}
    x = np.clip(np.rint(samples.x[keep] * 255.0), 0, 255).astype(np.uint8)
    return {"x": x, "y": samples.y[keep]}


def grid_path(run_dir: Path, unit: int, generation: int) -> Path:
    return Path(run_dir) / "samples" / f"unit{unit:06d}" / f"gen{generation:04d}.npz"


def _save_grid_samples(store: RunStore, unit: int, generation: int, samples: Data | None) -> None:
    grid = _grid_arrays(samples)
    if grid is not None:
        save_npz(grid_path(store.path, unit, generation), grid)



def _record_row(unit: int, r: GenerationRecord) -> tuple:
    vals = {**r.metrics, **r.diagnostics}
    return (unit, r.generation, r.status, r.reason, r.n_real, r.n_synthetic,
            r.provenance.to_json(), dict(r.seconds), vals)



def _model_arrays(model) -> dict[str, np.ndarray]:
    return {f"model/{k}": np.asarray(v) for k, v in model.state_dict().items()}


def _save_unit_checkpoint(store: RunStore, unit: int, state, keeps_history: bool) -> None:
    arrays: dict[str, np.ndarray] = {"generation": np.array(state.generation), **_model_arrays(state.model)}
    hist = state.history if keeps_history else state.history[-1:]
    arrays["history_len"] = np.array(len(hist))
    for i, h in enumerate(hist):
        arrays[f"history/{i}/x"] = h.x
        if h.y is not None:
            arrays[f"history/{i}/y"] = h.y
    save_npz(store.checkpoints / f"unit{unit:06d}.npz", arrays)


def _load_model(arrays: dict[str, np.ndarray], make_model):
    return make_model().load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("model/")})


def _load_unit_checkpoint(path: Path, make_model):
    from scloop.loop.engine import LoopState

    a = load_npz(path)
    hist = [Data(a[f"history/{i}/x"], a.get(f"history/{i}/y")) for i in range(int(a["history_len"]))]
    return LoopState(int(a["generation"]), _load_model(a, make_model), hist)


def cache_dir_for(store_path: Path) -> Path:
    """Trained feature networks and verifier classifiers are cached (by content digest) in
    ``<runs root>/.cache``, shared by every run under that root."""
    return Path(store_path).parent / ".cache"


def _device(spec: ExperimentSpec) -> str:
    return str(spec.model.kwargs.get("device", "auto"))
