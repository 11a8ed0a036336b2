"""Motion readers on the real shared files (../shared/data/mocap) and on malformed copies:
BVH (read_bvh), DeepMimic JSON (read_deepmimic), HumanML3D arrays; the dataset registry checks."""

from __future__ import annotations

import csv
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from scloop.core.registry import ConfigError
from scloop.motion import datasets as D
from scloop.motion.bvh import BVHError, read_bvh
from scloop.motion.deepmimic import (HUMANOID3D_JOINTS, MotionFormatError, _quat_to_matrix,
                                     humanoid3d_skeleton, read_deepmimic)
from scloop.motion.humanml3d import HUMANML3D_DIMS, humanml3d_positions, read_humanml3d, write_humanml3d

MOCAP = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mocap"
BANDAI = MOCAP / "bandai-namco"
CMU = MOCAP / "cmu-deepmimic"
BVH_CLIPS = ("dataset-2/data/dataset-2_walk_normal_001.bvh", "dataset-1/data/dataset-1_walk_happy_001.bvh",
             "dataset-1/data/dataset-1_bow_active_001.bvh")
DM_CLIPS = ("cmu01-09/02/02_01.txt", "cmu01-09/02/02_04.txt", "cmu86-94/88/88_06.txt")


def _index(folder: Path) -> dict[str, dict[str, str]]:
    with open(folder / "index.csv", newline="") as f:
        return {r["file"]: r for r in csv.DictReader(f)}


@pytest.fixture(scope="module")
def bandai(require_data) -> Path:
    return require_data(BANDAI / "index.csv", "Bandai-Namco data").parent


@pytest.fixture(scope="module")
def cmu(require_data) -> Path:
    return require_data(CMU / "index.csv", "CMU DeepMimic data").parent


# ----------------------------------------------------------------------------- BVH, real files


@pytest.mark.parametrize("rel", BVH_CLIPS)
def test_bvh_real_clips(bandai, rel):
    clip = read_bvh(bandai / rel)
    row = _index(bandai)[rel]
    assert clip.n_frames == int(row["frames"])
    assert clip.skeleton.n_joints == int(row["joints"]) == 22
    assert clip.fps == pytest.approx(30.0, rel=1e-5)
    X = clip.positions()
    head = X[:, clip.skeleton.index("Head")]
    assert 1.3 < np.median(head[:, 2]) < 1.9  # Z up, metres
    toes = X[:, [clip.skeleton.index("Toes_L"), clip.skeleton.index("Toes_R")], 2]
    assert -0.02 < toes.min() < 0.08  # toe joints sit ~4 cm above the floor at contact
    # bone lengths are preserved by FK in every frame
    j, p = clip.skeleton.index("LowerLeg_L"), clip.skeleton.index("UpperLeg_L")
    bone = np.linalg.norm(X[:, j] - X[:, p], axis=1)
    assert np.allclose(bone, clip.skeleton.bone_lengths()[j], atol=1e-9)


def test_bvh_walk_moves_horizontally(bandai):
    X = read_bvh(bandai / BVH_CLIPS[0]).positions()
    hips = X[:, 1]
    assert np.linalg.norm(hips[-1, :2] - hips[0, :2]) > 2.0  # a walk travels metres in the plane
    assert abs(hips[-1, 2] - hips[0, 2]) < 0.1  # but not up or down


# ----------------------------------------------------------------------------- BVH, malformed copies

SHORT_BVH = "dataset-1/data/dataset-1_dash_normal_001.bvh"  # 20 frames


def _broken(bandai, tmp_path, edit) -> Path:
    lines = (bandai / SHORT_BVH).read_text().splitlines()
    out = tmp_path / "broken.bvh"
    out.write_text("\n".join(edit(lines)) + "\n")
    return out


def _motion_at(lines: list[str]) -> int:
    return next(k for k, ln in enumerate(lines) if ln.strip() == "MOTION")


def _drop_first(lines, key):
    k = next(k for k, ln in enumerate(lines) if ln.strip().startswith(key))
    return lines[:k] + lines[k + 1:]


def _drop_last_brace(lines):
    m = _motion_at(lines)
    k = max(k for k in range(m) if lines[k].strip() == "}")
    return lines[:k] + lines[k + 1:]


def _extra_brace(lines):
    m = _motion_at(lines)
    return lines[:m] + ["}"] + lines[m:]


def _short_row(lines):
    k = _motion_at(lines) + 3 + 5  # header lines, then frame 5
    lines = list(lines)
    lines[k] = " ".join(lines[k].split()[:-1])
    return lines


def _truncate(lines):
    return lines[:-3]


def _nan(lines):
    k = _motion_at(lines) + 3 + 2
    vals = lines[k].split()
    vals[7] = "nan"
    return lines[:k] + [" ".join(vals)] + lines[k + 1:]


def _unknown_channel(lines):
    k = next(k for k, ln in enumerate(lines) if ln.strip().startswith("CHANNELS"))
    return lines[:k] + [lines[k].replace("Xrotation", "Wrotation")] + lines[k + 1:]


def _missing_offset(lines):
    # the OFFSET of the second joint (Hips); the root's is the first OFFSET line
    ks = [k for k, ln in enumerate(lines) if ln.strip().startswith("OFFSET")]
    return lines[: ks[1]] + lines[ks[1] + 1:]


@pytest.mark.parametrize("edit, message", [
    (_drop_last_brace, "unbalanced"),
    (_extra_brace, "unbalanced"),
    (_short_row, "values"),
    (_truncate, "truncated"),
    (_nan, "NaN"),
    (_unknown_channel, "unknown channel"),
    (_missing_offset, "OFFSET"),
    (lambda lines: _drop_first(lines, "HIERARCHY"), "HIERARCHY"),
    (lambda lines: lines[: _motion_at(lines)], "MOTION"),
])
def test_bvh_malformed(bandai, tmp_path, edit, message):
    path = _broken(bandai, tmp_path, edit)
    with pytest.raises(BVHError) as info:
        read_bvh(path)
    assert "broken.bvh" in str(info.value) and message in str(info.value)


def test_bvh_unmodified_copy_reads(bandai, tmp_path):
    clip = read_bvh(_broken(bandai, tmp_path, lambda lines: lines))
    assert clip.n_frames == 20


# ----------------------------------------------------------------------------- DeepMimic, real files


@pytest.mark.parametrize("rel", DM_CLIPS)
def test_deepmimic_real_clips(cmu, rel):
    clip = read_deepmimic(cmu / rel)
    row = _index(cmu)[rel]
    assert clip.n_frames == int(row["frames"])
    assert clip.fps == pytest.approx(float(row["fps"]))
    assert clip.skeleton.names == HUMANOID3D_JOINTS and clip.skeleton.n_joints == 15
    R = clip.rotations
    assert np.allclose(R @ np.swapaxes(R, -1, -2), np.eye(3), atol=1e-9)
    X = clip.positions()
    sk = clip.skeleton
    ankles = X[:, [sk.index("right_ankle"), sk.index("left_ankle")], 2]
    assert -0.05 < ankles.min() < 0.15  # Z up: ankle joints near the floor (88_06 dips 3 cm below)
    assert 0.7 < X[0, 0, 2] < 1.0  # pelvis height at the start (about 0.86 m standing)
    assert 1.1 < np.median(X[:, sk.index("neck"), 2]) < 1.6 or "jump" in row["description"]
    # knee -> ankle distance is the shank length of humanoid3d.txt in every frame
    shank = np.linalg.norm(X[:, sk.index("left_ankle")] - X[:, sk.index("left_knee")], axis=1)
    assert np.allclose(shank, 0.409870, atol=1e-9)


def test_deepmimic_walk_faces_and_moves_forward(cmu):
    """02_01 is a walk: the pelvis travels ~3 m, along the root's local +x (DeepMimic's forward)."""
    clip = read_deepmimic(cmu / DM_CLIPS[0])
    X = clip.positions()
    travel = X[-1, 0] - X[0, 0]
    assert np.linalg.norm(travel[:2]) > 2.0
    fwd = clip.rotations[:, 0, :, 0]  # root's local x axis in the world
    assert np.mean(fwd[:, :2] @ (travel[:2] / np.linalg.norm(travel[:2]))) > 0.9
    # right hip on the character's right: (left - right) points to the left of forward (+90 deg)
    sk = clip.skeleton
    lr = X[0, sk.index("left_hip")] - X[0, sk.index("right_hip")]
    assert np.cross(fwd[0], lr)[2] > 0


def test_quaternion_convention():
    from scipy.spatial.transform import Rotation

    q = Rotation.random(20, random_state=0).as_quat()  # x y z w
    wxyz = np.roll(q, 1, axis=1)
    assert np.allclose(_quat_to_matrix(wxyz), Rotation.from_quat(q).as_matrix(), atol=1e-12)


def test_humanoid3d_skeleton_offsets_z_up():
    sk = humanoid3d_skeleton()
    off = dict(zip(sk.names, sk.offsets))
    assert np.allclose(off["chest"], [0, 0, 0.236151])  # Y up (0, .236, 0) -> Z up
    assert np.allclose(off["right_hip"], [0, -0.084887, 0])  # DeepMimic +z (right) -> scloop -y
    assert sk.foot_joints() == [sk.index("right_ankle"), sk.index("left_ankle")]


# ----------------------------------------------------------------------------- DeepMimic, malformed


def _frame() -> list[float]:
    """A valid 44-number humanoid3d frame: identity quaternions, knees -0.3, elbows 0.4 rad."""
    row = [1 / 30, 0.0, 0.86, 0.0] + [1.0, 0.0, 0.0, 0.0] * 3
    row += [1.0, 0, 0, 0, -0.3, 1.0, 0, 0, 0, 1.0, 0, 0, 0, 0.4]  # right hip, knee, ankle, shoulder, elbow
    row += [1.0, 0, 0, 0, -0.3, 1.0, 0, 0, 0, 1.0, 0, 0, 0, 0.4]  # left side
    assert len(row) == 44
    return row


def _write(tmp_path, doc, raw: str | None = None) -> Path:
    p = tmp_path / "motion.txt"
    p.write_text(raw if raw is not None else json.dumps(doc))
    return p


def test_deepmimic_minimal_file_and_hinges(tmp_path):
    frames = [_frame() for _ in range(5)]
    frames[-1][0] = 0.0
    clip = read_deepmimic(_write(tmp_path, {"Loop": "wrap", "Frames": frames}))
    assert clip.n_frames == 5 and clip.fps == pytest.approx(30.0) and clip.labels["loop"] == "wrap"
    sk = clip.skeleton
    # knee hinge -0.3 rad about DeepMimic's local z = about scloop's -y (z -> -y under C)
    k = sk.index("right_knee")
    # Rz(a) in DeepMimic's Y-up frame, conjugated by C, is a rotation by a about C e_z = -y: Ry(-a)
    b = 0.3  # = -a for the knee angle a = -0.3
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    assert np.allclose(clip.rotations[0, k], ry)
    assert np.allclose(clip.translations[:, 0], [0.0, 0.0, 0.86])  # (0, .86, 0) Y up -> Z up


@pytest.mark.parametrize("make, message", [
    (lambda: (None, "{not json"), "not valid JSON"),
    (lambda: ({"Loop": "none"}, None), "Frames"),
    (lambda: ({"Frames": []}, None), "non-empty"),
    (lambda: ({"Frames": [_frame(), _frame()[:-1]]}, None), "frame 1 has 43 values"),
    (lambda: ({"Frames": [_frame(), _frame()[:10] + [float("nan")] + _frame()[11:]]}, None), "non-finite"),
    (lambda: ({"Frames": [_frame(), _frame()[:4] + [1.5, 0, 0, 0] + _frame()[8:]]}, None), "norm 1.5"),
    (lambda: ({"Frames": [_frame()[:21] + [0.0, 0.0, 0.0, 0.0] + _frame()[25:]]}, None), "right_ankle quaternion"),
    (lambda: ({"Frames": [[-0.1] + _frame()[1:], _frame()]}, None), "duration"),
    (lambda: ({"Frames": [_frame()[:5] + ["x"] + _frame()[6:]]}, None), "non-numeric"),
])
def test_deepmimic_malformed(tmp_path, make, message):
    doc, raw = make()
    path = _write(tmp_path, doc, raw)
    with pytest.raises(MotionFormatError) as info:
        read_deepmimic(path)
    assert "motion.txt" in str(info.value) and message in str(info.value)


def test_deepmimic_small_quaternion_error_is_normalised(tmp_path):
    f = _frame()
    f[4:8] = [1.004, 0.0, 0.0, 0.0]  # root quaternion 0.4 % too long: renormalised
    clip = read_deepmimic(_write(tmp_path, {"Frames": [f, _frame()]}))
    assert np.allclose(clip.rotations[0, 0], np.eye(3))


def test_deepmimic_varying_durations_use_median(tmp_path):
    frames = [_frame() for _ in range(6)]
    for f, dt in zip(frames, [1 / 30, 1 / 30, 1 / 30, 1 / 25, 1 / 30, 0.0]):
        f[0] = dt
    with pytest.warns(UserWarning, match="median"):
        clip = read_deepmimic(_write(tmp_path, {"Frames": frames}))
    assert clip.fps == pytest.approx(30.0)


def test_deepmimic_wrong_skeleton(tmp_path):
    from scloop.motion.skeleton import Skeleton, SkeletonError

    sk = Skeleton(("a", "b"), np.array([-1, 0]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="humanoid3d"):
        read_deepmimic(_write(tmp_path, {"Frames": [_frame()]}), skeleton=sk)
    h3d = humanoid3d_skeleton()
    cm = Skeleton(h3d.names, h3d.parents, h3d.offsets * 100)  # offsets in centimetres
    with pytest.raises(SkeletonError, match=r"measures 146 m .* allowed: 0.6-2.2 m"):
        read_deepmimic(_write(tmp_path, {"Frames": [_frame()]}), skeleton=cm)


def test_real_files_read_at_human_size(bandai, cmu):
    """Units from the body: Bandai's BVH files are centimetres (1.34 m head to ankle), the
    humanoid3d skeleton is metres (1.46 m, shoulder to ankle: it has no head joint)."""
    from scloop.motion.bvh import UNITS, infer_scale
    from scloop.motion.skeleton import Skeleton, body_height

    c = read_bvh(bandai / BVH_CLIPS[0])
    assert body_height(c.skeleton) == pytest.approx(1.345, abs=0.01)
    file_units = Skeleton(c.skeleton.names, c.skeleton.parents, c.skeleton.offsets / UNITS["cm"])
    assert infer_scale(file_units) == UNITS["cm"]
    np.testing.assert_allclose(read_bvh(bandai / BVH_CLIPS[0], scale="cm").positions(), c.positions())
    assert body_height(read_deepmimic(cmu / DM_CLIPS[0]).skeleton) == pytest.approx(1.458, abs=0.01)


# ----------------------------------------------------------------------------- HumanML3D


def _features_from_positions(pos_y_up: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The inverse of humanml3d_positions for the root and ric blocks (T2M conventions): joint
    positions (T, 22, 3) Y up with pos[0, 0].xz = 0, half-angle yaw theta (T,) with theta[0] = 0."""
    from scloop.motion.humanml3d import _rot_y

    T = len(pos_y_up)
    R = _rot_y(2 * theta)  # the heading rotation R(q_t); features store R(q) applied to world vectors
    f = np.zeros((T, HUMANML3D_DIMS))
    f[:-1, 0] = np.diff(theta)
    step = np.diff(pos_y_up[:, 0], axis=0) * [1, 0, 1]
    f[:-1, 1:3] = np.einsum("tab,tb->ta", R[1:], step)[:, [0, 2]]
    f[:, 3] = pos_y_up[:, 0, 1]
    rel = pos_y_up[:, 1:] - pos_y_up[:, :1] * [1, 0, 1]
    f[:, 4:67] = np.einsum("tab,tjb->tja", R, rel).reshape(T, 63)
    return f


def test_humanml3d_write_read_and_positions(tmp_path):
    rng = np.random.default_rng(0)
    T = 30
    theta = np.r_[0.0, np.cumsum(rng.normal(0, 0.05, T - 1))]
    pos = rng.normal(0, 0.3, (T, 22, 3))
    walk = np.cumsum(rng.normal(0, 0.05, (T, 2)), axis=0)
    pos[:, 0] = np.c_[walk[:, 0], 0.9 + 0.02 * rng.normal(size=T), walk[:, 1]]
    pos[:, :, [0, 2]] -= pos[:1, :1, [0, 2]]  # start at the origin
    feats = _features_from_positions(pos, theta).astype(np.float32)
    write_humanml3d(tmp_path, "000001", feats, ["a person walks forward.", "someone strolls"])
    got, texts = read_humanml3d(tmp_path, "000001")
    assert got.dtype == np.float32 and got.shape == (T, 263)
    assert texts == ["a person walks forward.", "someone strolls"]
    assert (tmp_path / "texts" / "000001.txt").read_text().splitlines()[0].count("#") == 3
    assert np.allclose(humanml3d_positions(got, up="y"), pos, atol=1e-5)
    # Z-up output = C p
    assert np.allclose(humanml3d_positions(got)[..., 2], pos[..., 1], atol=1e-5)


def test_humanml3d_straight_line():
    """No yaw: the root integrates its (x, z) velocity; the first frame is at the origin."""
    f = np.zeros((5, HUMANML3D_DIMS))
    f[:, 2] = 0.1  # +z (forward in HumanML3D) 0.1 m per frame
    f[:, 3] = 0.9
    p = humanml3d_positions(f, up="y")
    assert np.allclose(p[:, 0], np.c_[np.zeros(5), np.full(5, 0.9), 0.1 * np.arange(5)])
    f[:, 0] = np.pi / 4  # half-angle units: each frame turns the heading by 90 degrees
    p = humanml3d_positions(f, up="y")
    # frame 0's velocity is rotated by frame 1's heading (2 theta_1 = 90 deg): R_y(-90) (0, 0, .1)
    assert np.allclose(p[1, 0] - p[0, 0], [-0.1, 0, 0], atol=1e-12)
    assert np.allclose(p[2, 0] - p[1, 0], [0, 0, -0.1], atol=1e-12)  # then 180 deg


@pytest.mark.parametrize("feats, texts, message", [
    (np.zeros((10, 262), np.float32), ["x"], "(T, 263)"),
    (np.zeros((10,), np.float32), ["x"], "(T, 263)"),
    (np.full((4, 263), np.nan, np.float32), ["x"], "NaN"),
    (np.zeros((4, 263), np.float32), [], "no caption"),
])
def test_humanml3d_malformed(tmp_path, feats, texts, message):
    write_humanml3d(tmp_path, "m", feats, texts)
    with pytest.raises(MotionFormatError) as info:
        read_humanml3d(tmp_path, "m")
    assert message in str(info.value) and "m." in str(info.value)


def test_humanml3d_missing_files(tmp_path):
    write_humanml3d(tmp_path, "m", np.zeros((4, 263), np.float32), ["x"])
    (tmp_path / "texts" / "m.txt").unlink()
    with pytest.raises(MotionFormatError, match="text file not found"):
        read_humanml3d(tmp_path, "m")
    with pytest.raises(MotionFormatError, match="feature file not found"):
        read_humanml3d(tmp_path, "other")


# ----------------------------------------------------------------------------- dataset registry


def test_registry_describe_and_unknown():
    assert set(D.DATASETS) == {"bandai-namco", "cmu-deepmimic", "mnist", "digits"}
    for name in D.DATASETS:
        text = D.describe(name)
        assert name in text and "Licence" in text and len(text.splitlines()) <= 6
    assert "CC BY-NC 4.0" in D.describe("bandai-namco")
    assert "NSF EIA-0196217" in D.describe("cmu-deepmimic")
    with pytest.raises(ConfigError, match="bandai-namco"):
        D.describe("bandai")


def test_check_real_motion_sets(bandai, cmu):
    data_dir = MOCAP.parent
    rep = D.check("bandai-namco", data_dir, parse=False)  # sha256 of all 524 files
    assert rep.ok and rep.expected == rep.found == 524 and not rep.extra, str(rep)
    rep = D.check("cmu-deepmimic", CMU)  # the folder itself; parses all 84 clips
    assert rep.ok and rep.expected == rep.found == 84, str(rep)


def test_check_reports_problems(bandai, tmp_path):
    """A copy of three indexed clips: one altered (sha256 and frames), one missing, one extra file."""
    root = tmp_path / "mocap" / "bandai-namco"
    rows = list(_index(bandai).values())[:3]
    for r in rows[:2]:
        (root / r["file"]).parent.mkdir(parents=True, exist_ok=True)
        (root / r["file"]).write_bytes((bandai / r["file"]).read_bytes())
    text = (bandai / rows[1]["file"]).read_text().rstrip("\n").rsplit("\n", 1)[0]  # drop the last frame
    n = int(rows[1]["frames"])
    assert f"Frames:\t{n}\n" in text
    (root / rows[1]["file"]).write_text(text.replace(f"Frames:\t{n}\n", f"Frames:\t{n - 1}\n") + "\n")
    (root / rows[0]["file"]).with_name("extra_clip.bvh").write_bytes(b"")
    with open(bandai / "index.csv", newline="") as f:
        head = f.readline() + "".join(f.readline() for _ in range(3))
    (root / "index.csv").write_text(head)
    rep = D.check("bandai-namco", tmp_path)
    assert not rep.ok and rep.expected == 3 and rep.found == 2
    assert rep.missing == (rows[2]["file"],)
    assert any("sha256" in m for m in rep.mismatched) and any("frames" in m for m in rep.mismatched)
    assert rep.extra == (str(Path(rows[0]["file"]).with_name("extra_clip.bvh")),)
    assert "PROBLEMS" in str(rep)


def test_check_real_mnist(shared_data):
    rep = D.check("mnist", shared_data)
    assert rep.ok and rep.found == 3 and any("train-images" in n for n in rep.notes)


def test_check_mnist_and_digits(tmp_path):
    rep = D.check("mnist", tmp_path)
    assert not rep.ok and len(rep.missing) == 3
    assert D.check("digits", tmp_path).ok


def test_check_missing_folder(tmp_path):
    rep = D.check("cmu-deepmimic", tmp_path)
    assert not rep.ok and rep.missing == ("index.csv",)


def test_load_bandai_filters_and_labels(bandai):
    clips = D.load_bandai(MOCAP.parent, contents=["walk"], styles="happy")
    assert len(clips) == 2  # dataset-1 walk happy 001/002 (dataset-2 has no "happy")
    assert all(c.labels["action"] == "walk" and c.labels["style"] == "happy" for c in clips)
    assert D.load_bandai(bandai, contents=["run"], limit=3)[2].labels["action"] == "run"
    with pytest.raises(ConfigError, match="walk"):
        D.load_bandai(bandai, contents=["wlak"])


def test_load_cmu_deepmimic_labels(cmu):
    clips = D.load_cmu_deepmimic(MOCAP.parent, limit=4)
    assert [c.labels["text"] for c in clips] == ["walk", "walk", "run/jog", "jump, balance"]
    assert clips[0].labels["cmu_clip"] == "02_01" and clips[0].name == "02_01"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        slow = [c for c in D.load_cmu_deepmimic(CMU) if "timing_note" in c.labels]
    assert sorted(c.labels["cmu_clip"] for c in slow) == ["88_06", "88_08", "88_09"]


def test_bvh_brace_on_the_joint_line_and_missing_brace(tmp_path):
    from scloop.motion.bvh import BVHError, read_bvh

    ok = """HIERARCHY
ROOT hips {
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT knee {
    OFFSET 0 -40 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
0 90 0 0 0 0 0 0 0
0 90 0 0 0 0 10 0 0
"""
    (tmp_path / "a.bvh").write_text(ok)
    c = read_bvh(tmp_path / "a.bvh")
    assert c.skeleton.names == ("hips", "knee") and c.fps == 20.0
    assert np.allclose(c.positions()[0, 1], [0, 0, 0.5])  # 40 cm below 90 cm, Z up, metres
    (tmp_path / "b.bvh").write_text(ok.replace("JOINT knee {", "JOINT knee"))
    with pytest.raises(BVHError, match="expected '\\{' after JOINT knee"):
        read_bvh(tmp_path / "b.bvh")
    (tmp_path / "c.bvh").write_text(ok + "0 90 0 0 0 0 0 0 0\n")
    with pytest.raises(BVHError, match="3 rows but the header says Frames: 2"):
        read_bvh(tmp_path / "c.bvh")


# ----------------------------------------------------------------------------- BVH, bad inputs (no shared data)

TINY_BVH = """HIERARCHY
ROOT hips
{
  OFFSET 0 0 0
  CHANNELS 6 Xposition Yposition Zposition Zrotation Xrotation Yrotation
  JOINT knee
  {
    OFFSET 0 -40 0
    CHANNELS 3 Zrotation Xrotation Yrotation
    End Site
    {
      OFFSET 0 -40 0
    }
  }
}
MOTION
Frames: 2
Frame Time: 0.05
0 90 0 0 0 0 0 0 0
0 90 0 0 0 0 10 0 0
"""  # line 2: ROOT, 6: JOINT, 8: knee OFFSET, 9: knee CHANNELS, 16: MOTION, 17: Frames, 18: Frame Time, 19-20: frames

SECOND_ROOT = "ROOT other\n{\n  OFFSET 0 0 0\n  CHANNELS 3 Zrotation Xrotation Yrotation\n}\n"


def _tiny(tmp_path, text: str | bytes = TINY_BVH) -> Path:
    p = tmp_path / "tiny.bvh"
    p.write_bytes(text if isinstance(text, bytes) else text.encode())
    return p


def test_tiny_bvh_reads(tmp_path):
    c = read_bvh(_tiny(tmp_path))
    assert c.n_frames == 2 and c.fps == pytest.approx(20.0) and c.skeleton.names == ("hips", "knee")


@pytest.mark.parametrize("old, new, message", [
    # Frames: zero, negative, not an integer, no colon
    ("Frames: 2", "Frames: 0", ":17: Frames: 0; allowed: an integer >= 1"),
    ("Frames: 2", "Frames: -3", ":17: Frames: -3; allowed"),
    ("Frames: 2", "Frames: two", ":17: Frames: 'two' is not an integer"),
    ("Frames: 2", "Frames: 2.5", ":17: Frames: '2.5' is not an integer"),
    ("Frames: 2", "Frames 2", ":17: expected 'Frames: <value>'"),
    # Frame Time: zero, negative, non-numeric, non-finite, missing
    ("Frame Time: 0.05", "Frame Time: 0", ":18: Frame Time: '0'; allowed: a positive finite number"),
    ("Frame Time: 0.05", "Frame Time: -0.05", ":18: Frame Time: '-0.05'; allowed"),
    ("Frame Time: 0.05", "Frame Time: fast", ":18: Frame Time: 'fast'; allowed"),
    ("Frame Time: 0.05", "Frame Time: inf", ":18: Frame Time: 'inf'; allowed"),
    ("Frame Time: 0.05", "Frame Time: nan", ":18: Frame Time: 'nan'; allowed"),
    ("Frame Time: 0.05\n", "", ":18: expected 'Frame Time: <value>'"),
    # MOTION values: non-numeric, wrong count (short and long), non-finite
    ("0 90 0 0 0 0 10 0 0", "0 90 0 0 0 0 1O 0 0", ":20: frame 1: non-numeric value '1O'"),
    ("0 90 0 0 0 0 10 0 0", "0 90 0 0 0 0 10 0 0,", ":20: frame 1: non-numeric value '0,'"),
    ("0 90 0 0 0 0 0 0 0\n", "0 90 0 0 0 0 0 0\n", ":19: frame 0 has 8 values, the HIERARCHY declares 9 channels"),
    ("0 90 0 0 0 0 10 0 0", "0 90 0 0 0 0 10 0 0 0", ":20: frame 1 has 10 values, the HIERARCHY declares 9"),
    ("0 90 0 0 0 0 10 0 0", "0 90 0 0 0 0 10 inf 0", ":20: frame 1: NaN or infinite"),
    # hierarchy: a second ROOT (after the first closed, and nested inside it), bad OFFSET, repeated channel
    ("MOTION\n", SECOND_ROOT + "MOTION\n", ":16: a second ROOT"),
    ("  JOINT knee\n", "  " + SECOND_ROOT + "  JOINT knee\n", ":6: a second ROOT"),
    ("OFFSET 0 -40 0\n    CHANNELS", "OFFSET 0 nan 0\n    CHANNELS", ":8: OFFSET values not finite"),
    ("CHANNELS 3 Zrotation Xrotation Yrotation", "CHANNELS 3 Zrotation Xrotation Zrotation",
     ":9: repeated channel"),
], ids=["frames-0", "frames-negative", "frames-text", "frames-float", "frames-no-colon", "frame-time-0",
        "frame-time-negative", "frame-time-text", "frame-time-inf", "frame-time-nan", "frame-time-missing",
        "value-text", "value-comma", "row-short", "row-long", "value-inf", "second-root", "second-root-nested",
        "offset-nan", "repeated-channel"])
def test_bvh_bad_inputs_name_file_line_and_value(tmp_path, old, new, message):
    assert old in TINY_BVH
    path = _tiny(tmp_path, TINY_BVH.replace(old, new, 1))
    with pytest.raises(BVHError) as info:
        read_bvh(path)
    assert isinstance(info.value, ValueError)  # what `scloop motion animate` and the tasks catch
    assert f"{path}{message}" in str(info.value), str(info.value)


def test_bvh_encoding(tmp_path):
    """UTF-8 is the one encoding: a BOM and non-ASCII UTF-8 names read; Latin-1 or binary bytes
    raise BVHError naming the file, the line and the byte."""
    c = read_bvh(_tiny(tmp_path, "\ufeff" + TINY_BVH.replace("knee", "kn\u00e9e")))
    assert c.skeleton.names == ("hips", "kn\u00e9e")
    latin = _tiny(tmp_path, TINY_BVH.replace("knee", "kn\u00e9e").encode("latin-1"))
    offset = TINY_BVH.index("knee") + 2
    with pytest.raises(BVHError, match=f"tiny.bvh:6: byte 0xe9 at offset {offset} is not UTF-8 text"):
        read_bvh(latin)
    with pytest.raises(BVHError, match="tiny.bvh:1: byte 0x89 at offset 0 is not UTF-8"):
        read_bvh(_tiny(tmp_path, b"\x89PNG\r\n\x1a\n" + bytes(range(256))))
    (tmp_path / "folder.bvh").mkdir()
    with pytest.raises(BVHError, match="folder.bvh: cannot read"):
        read_bvh(tmp_path / "folder.bvh")


def test_cli_animate_reports_a_bad_bvh(tmp_path):
    from typer.testing import CliRunner

    from scloop.cli import app

    path = _tiny(tmp_path, TINY_BVH.replace("Frame Time: 0.05", "Frame Time: 0"))
    r = CliRunner().invoke(app, ["motion", "animate", str(path), "--out", str(tmp_path / "x.gif")])
    assert r.exit_code == 1, r.output
    assert f"{path}:18: Frame Time: '0'" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "x.gif").exists()
