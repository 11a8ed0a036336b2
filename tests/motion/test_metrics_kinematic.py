"""Physics metrics on constructed motions with known answers; the kinematic correction and the
corruptions on constructed and real clips; the check-correction report."""

from __future__ import annotations

import math

import numpy as np
import pytest

from scloop.motion import metrics as M
from scloop.motion.corrupt import KINDS, VIOLATION, corrupt
from scloop.motion.kinematic import kinematic_correct
from scloop.motion.skeleton import Clip, Skeleton

FPS = 30.0


def _clip(root_xyz: np.ndarray) -> Clip:
    """A two-joint body: a root and a 'foot' 1 m below it; identity rotations."""
    T = len(root_xyz)
    sk = Skeleton(("root", "foot"), np.array([-1, 0]), np.array([[0, 0, 0], [0, 0, -1.0]]))
    tr = np.zeros((T, 2, 3))
    tr[:, 0] = root_xyz
    tr[:, 1] = [0, 0, -1.0]
    return Clip(sk, np.broadcast_to(np.eye(3), (T, 2, 3, 3)).copy(), tr, FPS)


def _const(z: float, T: int = 60) -> Clip:
    return _clip(np.tile([0.0, 0.0, 1.0 + z], (T, 1)))


def _metrics(c: Clip) -> dict:
    return M.all_metrics(c.positions(), c.fps, c.skeleton.foot_joints())


def test_penetration_and_floating_known_values():
    m = _metrics(_const(-0.05))
    assert m["penetration"] == pytest.approx(0.05) and m["floating"] == 0.0
    m = _metrics(_const(0.12))
    assert m["floating"] == pytest.approx(0.10) and m["penetration"] == 0.0  # 2 cm tolerance
    assert _metrics(_const(0.0)) == {"penetration": 0.0, "floating": 0.0, "skating": 0.0, "jerk": 0.0}


def test_skating_is_the_speed_of_a_planted_foot():
    t = np.arange(60) / FPS
    sliding = _clip(np.stack([0.5 * t, 0 * t, np.ones_like(t)], axis=1))
    assert _metrics(sliding)["skating"] == pytest.approx(0.5, rel=1e-9)
    lifted = _clip(np.stack([0.5 * t, 0 * t, np.ones_like(t) + 0.2], axis=1))  # moving in the air
    assert _metrics(lifted)["skating"] == 0.0


def test_jerk_of_a_cubic():
    t = np.arange(90) / FPS
    c = _clip(np.stack([t**3, 0 * t, 1.0 + 0 * t], axis=1))
    assert _metrics(c)["jerk"] == pytest.approx(6.0, rel=1e-6)  # d3/dt3 t^3 = 6 m/s^3
    lin = _clip(np.stack([t, 0 * t, 1.0 + 0 * t], axis=1))
    assert _metrics(lin)["jerk"] == pytest.approx(0.0, abs=1e-6)


def test_clearance_shifts_the_ground():
    c = _const(0.04)
    assert M.floating(c.positions(), [1], clearance=[0.04]) == 0.0
    assert M.estimate_clearance([c], [1]) == pytest.approx([0.04])


def test_kinematic_grounds_floating_and_sinking_bodies():
    for z in (0.10, -0.08):
        out = kinematic_correct(_const(z))
        m = _metrics(out)
        assert m["floating"] == 0.0 and m["penetration"] == pytest.approx(0.0, abs=1e-12)
        assert np.allclose(out.rotations, _const(z).rotations)  # rotations untouched: bone lengths kept


def test_kinematic_stops_a_sliding_planted_foot():
    t = np.arange(60) / FPS
    sliding = _clip(np.stack([0.4 * t, 0 * t, np.ones_like(t)], axis=1))
    out = kinematic_correct(sliding)
    assert _metrics(out)["skating"] < 0.05 * _metrics(sliding)["skating"]


def test_corruptions_raise_their_violation():
    c = _clip(np.tile([0.0, 0.0, 1.0], (60, 1)))
    rng = np.random.default_rng(0)
    for kind in KINDS:
        bad = corrupt(c, kind, rng=rng)
        assert _metrics(bad)[VIOLATION[kind]] > _metrics(c)[VIOLATION[kind]] + 1e-3, kind
    with pytest.raises(ValueError, match="allowed"):
        corrupt(c, "melting", rng=rng)


@pytest.fixture(scope="module")
def real_clips(shared_data):
    from scloop.motion.check import clean_clips

    return clean_clips(shared_data, n_clips=4, max_frames=90)


def test_kinematic_on_real_clips_repairs_floating_and_keeps_clean_motion(real_clips):
    from scloop.motion.check import check_corrections, kinematic_fix

    rep = check_corrections(real_clips, {"kinematic": kinematic_fix})["corrections"]["kinematic"]
    assert rep["tracking_error_cm"] < 5
    r = rep["violation_ratio_after_over_before"]
    assert r["floating"] < 0.2 and r["penetration"] < 0.2 and r["sliding"] < 0.7
    assert all(math.isfinite(v) for v in rep["clean_metric_ratio"].values())
    assert rep["clean_metric_ratio"]["penetration"] <= 1.2 and rep["clean_metric_ratio"]["jerk"] <= 1.2


def test_cli_check_correction_json(shared_data):
    import json

    from typer.testing import CliRunner

    from scloop.cli import app

    r = CliRunner().invoke(app, ["motion", "check-correction", "--data-dir", str(shared_data), "--json",
                                 "--n-clips", "2", "--max-frames", "100", "--correction", "kinematic"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output)
    assert set(out["kinematic"]["violation_ratio_after_over_before"]) == set(KINDS)
    groups = {"root_height", "root_velocity", "yaw_rate", "rotations", "positions", "contacts"}
    bias = out["kinematic"]["bias"]
    assert set(bias["passes"]) == {"1", "2"} and set(bias["passes"]["1"]) == groups
    assert out["_bias"]["windows"] >= 1 and out["_bias"]["target"] == 0.1 and set(out["_bias"]["group_std"]) == groups
    short = CliRunner().invoke(app, ["motion", "check-correction", "--data-dir", str(shared_data), "--json",
                                     "--n-clips", "1", "--max-frames", "40", "--correction", "kinematic"])
    assert short.exit_code == 0 and "no clip is 60 frames long" in json.loads(short.output)["_bias"]["skipped"]
    bad = CliRunner().invoke(app, ["motion", "check-correction", "--data-dir", str(shared_data), "--correction", "x"])
    assert bad.exit_code == 2 and "allowed" in bad.output
    bad = CliRunner().invoke(app, ["motion", "check-correction", "--data-dir", str(shared_data), "--bias-windows", "x"])
    assert bad.exit_code == 2 and "--bias-windows: got 'x'; allowed: clips, task" in bad.output


def test_cli_animate_before_after(shared_data, tmp_path):
    import imageio.v3 as iio
    from typer.testing import CliRunner

    from scloop.cli import app

    f = next((shared_data / "mocap" / "bandai-namco" / "dataset-2" / "data").glob("*walk_normal_001.bvh"))
    out = tmp_path / "a.gif"
    r = CliRunner().invoke(app, ["motion", "animate", str(f), "--out", str(out), "--correct", "kinematic",
                                 "--max-frames", "12", "--stride", "3"])
    assert r.exit_code == 0, r.output
    frames = iio.imread(out, index=None)
    assert frames.shape[0] == 4 and frames.shape[2] > frames.shape[1]  # two panels side by side
    bad = CliRunner().invoke(app, ["motion", "animate", str(f), "--out", str(tmp_path / "a.avi")])
    assert bad.exit_code == 2 and ".gif" in bad.output and not (tmp_path / "a.avi").exists()


def test_physics_repairs_floating_penetration_jitter_on_real_clips(real_clips):
    from scloop.motion.check import check_corrections, physics_fix

    rep = check_corrections(real_clips, {"physics": physics_fix(1.0)})["corrections"]["physics"]
    assert rep["tracking_error_cm"] < 3 and rep["falls"] == 0 and rep["falls_on_corrupted"] == 0
    r = rep["violation_ratio_after_over_before"]
    assert r["floating"] <= 0.2 and r["penetration"] <= 0.2 and r["jitter"] <= 0.2
    assert 0 < rep["harness_load"] < 1


def test_issue4_acceptance_on_the_20_clean_bandai_clips(shared_data):
    """The issue's acceptance numbers, on the same 20 clips as `scloop motion check-correction`
    (~12 s): physics tracks < 3 cm without falls and cuts floating / penetration / jitter to
    <= 0.2; the chain cuts sliding to <= 0.5 and stays within 10 cm of the clean clip; on clean
    clips no metric of either output exceeds the input's by more than 20 % (docs/motion.md)."""
    from scloop.motion.check import clean_clips, check_corrections, motion_fixes

    fixes = motion_fixes(1.0)
    rep = check_corrections(clean_clips(shared_data), {k: fixes[k] for k in ("physics", "physics+kinematic")})
    phys, chain = rep["corrections"]["physics"], rep["corrections"]["physics+kinematic"]
    assert phys["tracking_error_cm"] < 3 and phys["falls"] == 0 and phys["falls_on_corrupted"] == 0
    r = phys["violation_ratio_after_over_before"]
    assert max(r["floating"], r["penetration"], r["jitter"]) <= 0.2, r
    assert chain["violation_ratio_after_over_before"]["sliding"] <= 0.5
    assert max(chain["error_to_clean_cm"].values()) < 10, chain["error_to_clean_cm"]
    for name, entry in (("physics", phys), ("physics+kinematic", chain)):
        assert max(entry["clean_metric_ratio"].values()) <= 1.2, (name, entry["clean_metric_ratio"])


def test_physics_bias_on_real_windows(shared_data):
    """What a self-consuming loop would accumulate: the physics correction's per-feature mean shift
    of windows of the 20 check clips (20 fps, 60 frames) stays below 0.1 group std in every
    feature group after one and two passes (docs/motion.md: the bandai task's locomotion windows
    do not meet this yet)."""
    from scloop.motion.check import clean_clips, correction_bias, physics_fix

    rep = correction_bias(clean_clips(shared_data), {"physics": physics_fix(1.0)})
    assert rep["windows"] == 32
    assert rep["round_trip"]["shift"]["contacts"] < 0.01  # re-encoding alone moves nothing here
    b = rep["corrections"]["physics"]
    assert b["within_target"], b["passes"]
    assert max(b["passes"]["2"].values()) < 0.1 and max(b["passes"]["1"].values()) < 0.06, b["passes"]
