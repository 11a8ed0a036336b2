"""The canonical motion representation: 6-D rotations, resampling, encode/decode round trip on real
Bandai-Namco and DeepMimic clips, invariance to planar rigid motions, layout, contacts, windows."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from scloop.motion import representation as rep
from scloop.motion.bvh import read_bvh
from scloop.motion.deepmimic import humanoid3d_skeleton, read_deepmimic
from scloop.motion.skeleton import Clip, Skeleton

MOCAP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mocap"
BANDAI_WALK = MOCAP / "bandai-namco" / "dataset-2" / "data" / "dataset-2_walk_normal_001.bvh"
BANDAI_KICK = MOCAP / "bandai-namco" / "dataset-1" / "data" / "dataset-1_kick_normal_001.bvh"
DM_WALK = MOCAP / "cmu-deepmimic" / "cmu01-09" / "02" / "02_01.txt"
DM_CARTWHEEL = MOCAP / "cmu-deepmimic" / "cmu46-56" / "49" / "49_08.txt"  # heading through inverted poses


def _real(path: Path) -> Clip:
    if not path.is_file():
        pytest.skip(f"{path} not found")
    return read_bvh(path) if path.suffix == ".bvh" else read_deepmimic(path)


def _aligned_positions(clip: Clip) -> np.ndarray:
    """World positions of the canonical clip, moved so that frame 0's root is at (0, 0, z) with
    heading 0 -- the frame decode starts from."""
    c = rep.canonicalize(clip)
    X, G = c.positions(), c.world_rotations()
    yaw0 = rep.heading(G[:1, 0], c.skeleton)[0]
    return np.einsum("ab,tjb->tja", rep.rot_z(-yaw0), X - np.r_[X[0, 0, :2], 0.0])


def _move(clip: Clip, angle: float, shift) -> Clip:
    """The clip rotated by ``angle`` about +Z and shifted by ``shift`` (x, y) in the plane."""
    Rz = rep.rot_z(np.array(angle))
    rots = clip.rotations.copy()
    trans = clip.translations.copy()
    rots[:, 0] = Rz @ rots[:, 0]
    trans[:, 0] = trans[:, 0] @ Rz.T + np.r_[shift, 0.0]
    return dataclasses.replace(clip, rotations=rots, translations=trans)


# ----------------------------------------------------------------------------- 6-D rotations


def test_6d_round_trip():
    from scipy.spatial.transform import Rotation

    R = Rotation.random(500, random_state=1).as_matrix()
    d6 = rep.rotation_to_6d(R)
    assert d6.shape == (500, 6)
    assert np.allclose(rep.rotation_from_6d(d6), R, atol=1e-12)
    assert np.allclose(rep.rotation_to_6d(rep.rotation_from_6d(d6)), d6, atol=1e-12)
    # a perturbed 6-D vector still maps to a proper rotation (Gram-Schmidt)
    noisy = rep.rotation_from_6d(d6 + np.random.default_rng(0).normal(0, 0.1, d6.shape))
    assert np.allclose(noisy @ np.swapaxes(noisy, -1, -2), np.eye(3), atol=1e-12)
    assert np.allclose(np.linalg.det(noisy), 1.0)


# ----------------------------------------------------------------------------- round trip on real clips


@pytest.mark.parametrize("path", [BANDAI_WALK, BANDAI_KICK, DM_WALK, DM_CARTWHEEL], ids=lambda p: p.stem)
def test_round_trip_real_clip(path):
    clip = _real(path)
    feats = rep.encode(clip, fps=30.0)
    assert feats.dtype == np.float32 and feats.shape == (clip.n_frames, rep.n_features(clip.skeleton))
    out = rep.decode(feats, clip.skeleton, fps=30.0)
    err = np.linalg.norm(out.positions() - _aligned_positions(clip), axis=-1)
    assert err.max() < 1e-3, f"max round-trip error {err.max() * 1e3:.4f} mm"  # measured ~3e-4 mm
    # decoding twice is stable: encode(decode(f)) == f
    assert np.allclose(rep.encode(out, fps=30.0), feats, atol=1e-4)


def test_canonicalize_bandai_placeholder_root():
    clip = _real(BANDAI_WALK)
    c = rep.canonicalize(clip)
    assert clip.skeleton.names[0] == "joint_Root" and c.skeleton.names[0] == "Hips"
    assert c.skeleton.n_joints == 21 and rep.canonical_skeleton(clip.skeleton).names == c.skeleton.names
    assert np.allclose(c.positions(), clip.positions()[:, 1:], atol=1e-12)
    lay = rep.feature_layout(clip.skeleton)
    assert lay["rotations"] == slice(4, 4 + 6 * 21) and lay["contacts"] == slice(193, 197)
    assert rep.n_features(clip.skeleton) == 197 == rep.n_features(c.skeleton)
    assert rep.n_features(humanoid3d_skeleton()) == 4 + 9 * 15 + 2


def test_heading_is_forward_on_walks():
    """The heading axis from rest offsets points where the walkers go: forward speed ~1 m/s."""
    assert np.allclose(rep.body_frame(humanoid3d_skeleton()), np.eye(3))
    for path in (BANDAI_WALK, DM_WALK):
        clip = _real(path)
        f = rep.encode(clip)
        v = f[:, rep.feature_layout(clip.skeleton)["root_velocity"]].mean(axis=0)
        assert 0.7 < v[0] < 1.6 and abs(v[1]) < 0.3, v


# ----------------------------------------------------------------------------- invariance


@pytest.mark.parametrize("path", [BANDAI_WALK, DM_CARTWHEEL], ids=lambda p: p.stem)
def test_invariant_to_planar_rigid_motion(path):
    clip = _real(path)
    f0 = rep.encode(clip)
    for angle, shift in ((1.1, (3.0, -2.0)), (-2.9, (0.0, 0.5)), (np.pi, (-10.0, 7.0))):
        f1 = rep.encode(_move(clip, angle, shift))
        assert np.allclose(f1, f0, atol=2e-5), np.abs(f1 - f0).max()


# ----------------------------------------------------------------------------- resampling


def test_resample_30_to_20_and_encode():
    clip = _real(DM_WALK)  # 85 frames at 30 fps
    r = rep.resample(clip, 20.0)
    assert r.fps == 20.0 and r.n_frames == 57  # floor(84 * 20 / 30) + 1
    # every third source frame coincides with every second target frame
    assert np.allclose(r.positions()[::2], clip.positions()[::3][: len(r.positions()[::2])], atol=1e-9)
    # in between: halfway along a slerp / lerp, so positions stay close to both neighbours
    mid = r.positions()[1]
    assert np.linalg.norm(mid - clip.positions()[1:3].mean(axis=0), axis=-1).max() < 0.01
    R = r.rotations
    assert np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-9)
    f = rep.encode(clip, fps=20.0)
    assert f.shape[0] == 57
    back = rep.decode(f, clip.skeleton, fps=20.0)
    assert np.linalg.norm(back.positions() - _aligned_positions(r), axis=-1).max() < 1e-3
    assert rep.resample(clip, 30.0) is clip
    with pytest.raises(ValueError, match="fps"):
        rep.resample(clip, 0.0)


def test_slerp_takes_the_short_arc():
    sk = Skeleton(("root",), np.array([-1]), np.zeros((1, 3)))
    rots = rep.rot_z(np.array([0.0, 3.0]))[:, None]  # 0 -> 172 deg about Z
    clip = Clip(sk, rots, np.zeros((2, 1, 3)), fps=1.0)
    r = rep.resample(clip, 2.0)
    assert r.n_frames == 3
    assert np.allclose(r.rotations[1, 0], rep.rot_z(np.array(1.5)), atol=1e-12)


# ----------------------------------------------------------------------------- contacts, windows, errors


def test_foot_contacts_constructed():
    """A foot that rests (frames 0-9), swings high and fast (10-19), rests again (20-29)."""
    T, fps = 30, 30.0
    pos = np.zeros((T, 1, 3))
    pos[10:20, 0, 0] = np.linspace(0.1, 1.0, 10)
    pos[20:, 0, 0] = 1.1
    pos[10:20, 0, 2] = 0.2
    pos[:, 0, 2] += 0.04  # joint 4 cm above the floor at contact (Bandai toes)
    c = rep.foot_contacts(pos, [0], fps)[:, 0]
    assert c[:9].all() and not c[10:20].any() and c[21:].all()


def test_contacts_on_real_walk():
    clip = _real(BANDAI_WALK)
    f = rep.encode(clip)
    c = f[:, rep.feature_layout(clip.skeleton)["contacts"]]
    assert set(np.unique(c)) <= {0.0, 1.0}
    assert np.all((0.25 < c.mean(axis=0)) & (c.mean(axis=0) < 0.8))  # each foot joint: stance and swing
    sk = rep.canonical_skeleton(clip.skeleton)
    names = [sk.names[j] for j in sk.foot_joints()]
    assert names == ["Foot_L", "Toes_L", "Foot_R", "Toes_R"]


def test_windows():
    f = np.arange(50 * 3, dtype=np.float32).reshape(50, 3)
    w = rep.windows(f, 20, 10)
    assert w.shape == (4, 20, 3) and np.array_equal(w[1], f[10:30])
    assert rep.windows(f, 60, 5).shape == (0, 60, 3)
    with pytest.raises(ValueError):
        rep.windows(f, 0, 1)


def test_decode_and_encode_errors():
    clip = _real(DM_WALK)
    f = rep.encode(clip)
    with pytest.raises(ValueError, match=r"\(T, 141\)"):
        rep.decode(f[:, :-1], clip.skeleton, fps=30.0)
    bad = f.copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        rep.decode(bad, clip.skeleton, fps=30.0)
    trans = clip.translations.copy()
    trans[:, 4] += 0.01  # an animated knee translation cannot be represented
    with pytest.raises(ValueError, match="right_knee"):
        rep.encode(dataclasses.replace(clip, translations=trans))
