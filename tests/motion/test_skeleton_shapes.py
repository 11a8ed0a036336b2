"""Skeletons of many shapes through the BVH reader and the physics correction, on BVH files written
here: a CMU-style file (31 joints, zero-length hip and lower-back bones, ZYX channels, 120 fps,
lengths in 1/0.45 inch), a 15-joint body without toes, a 24-joint SMPL-like body whose joints all
have 6 channels (one of them with an animated translation), a 70-joint body with fingers, face
joints and 0- and 1-channel joints; End Sites on every leaf.  No shared data needed."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from scloop.motion.bvh import UNITS, BVHError, BVHUnitsError, infer_scale, read_bvh
from scloop.motion.skeleton import Skeleton, SkeletonError, body_height

ROT = ("Zrotation", "Yrotation", "Xrotation")
POS = ("Xposition", "Yposition", "Zposition")


@dataclass
class J:
    """One BVH joint: ``offset`` in file units (Y up, the body faces +z, its left is +x),
    ``channels`` (a tuple of channel names; None writes no CHANNELS line), ``end`` an End Site
    offset (leaves), ``amp`` the amplitude (degrees) of its rotation channels' motion."""

    name: str
    parent: str | None
    offset: tuple[float, float, float]
    channels: tuple[str, ...] | None = ROT
    end: tuple[float, float, float] | None = None
    amp: float = 3.0
    wobble: float = 0.0  # amplitude (file units) of an animated translation (position channels)
    extra: dict = field(default_factory=dict)


def _mirror(joints: list[J], src: str = "Left", dst: str = "Right") -> list[J]:
    out = []
    for j in joints:
        m = lambda v: None if v is None else (-v[0], v[1], v[2])  # noqa: E731
        out.append(J(j.name.replace(src, dst, 1), None if j.parent is None else j.parent.replace(src, dst, 1),
                     m(j.offset), j.channels, m(j.end), j.amp, j.wobble))
    return out


def cmu_joints() -> list[J]:
    """The 31 joints of the CMU database's BVH conversions (names and tree as distributed; offsets
    made up here in the same proportions), in 1/0.45 inch: zero-length LHipJoint, RHipJoint and
    LowerBack bones, a zero-length thumb joint, End Sites on the leaves."""
    leg = [J("LHipJoint", "Hips", (0, 0, 0)), J("LeftUpLeg", "LHipJoint", (1.6, -1.8, 0.6)),
           J("LeftLeg", "LeftUpLeg", (0, -7.2, 0)), J("LeftFoot", "LeftLeg", (0, -7.0, 0)),
           J("LeftToeBase", "LeftFoot", (0, -0.8, 2.3), end=(0, 0, 1.1))]
    rleg = _mirror(leg, "Left", "Right")
    rleg[0] = J("RHipJoint", "Hips", (0, 0, 0))
    rleg[1].parent = "RHipJoint"
    arm = [J("LeftShoulder", "Spine1", (0, 2.0, 0)), J("LeftArm", "LeftShoulder", (3.0, 1.0, -0.2), amp=15),
           J("LeftForeArm", "LeftArm", (5.0, 0, 0), amp=10), J("LeftHand", "LeftForeArm", (3.6, 0, 0)),
           J("LeftFingerBase", "LeftHand", (0.6, 0, 0)),
           J("LeftHandIndex1", "LeftFingerBase", (0.7, 0, 0), end=(0.6, 0, 0)),
           J("LThumb", "LeftHand", (0, 0, 0), end=(0.5, 0, 0.5))]
    rarm = _mirror(arm, "Left", "Right")
    rarm[-1] = J("RThumb", "RightHand", (0, 0, 0), end=(-0.5, 0, 0.5))
    spine = [J("LowerBack", "Hips", (0, 0, 0)), J("Spine", "LowerBack", (0, 2.0, -0.1)),
             J("Spine1", "Spine", (0, 2.0, 0)), J("Neck", "Spine1", (0, 2.0, 0)),
             J("Neck1", "Neck", (0, 1.6, 0.1)), J("Head", "Neck1", (0, 1.6, 0), end=(0, 1.7, 0))]
    root = J("Hips", None, (0, 0, 0), POS + ROT)
    return [root] + leg + rleg + spine + arm + rarm


def fifteen_joints() -> list[J]:
    """15 joints, metres, no toes (the ankles are leaves), ZXY order."""
    zxy = ("Zrotation", "Xrotation", "Yrotation")
    leg = [J("LeftUpLeg", "Hips", (0.09, -0.05, 0), zxy), J("LeftLeg", "LeftUpLeg", (0, -0.42, 0), zxy),
           J("LeftFoot", "LeftLeg", (0, -0.41, 0), zxy, end=(0, -0.05, 0.15))]
    arm = [J("LeftArm", "Chest", (0.18, 0.22, 0), zxy, amp=15), J("LeftForeArm", "LeftArm", (0.28, 0, 0), zxy, amp=10),
           J("LeftHand", "LeftForeArm", (0.25, 0, 0), zxy, end=(0.08, 0, 0))]
    return ([J("Hips", None, (0, 0, 0), POS + zxy), J("Chest", "Hips", (0, 0.3, 0), zxy),
             J("Head", "Chest", (0, 0.36, 0), zxy, end=(0, 0.2, 0))]
            + leg + _mirror(leg) + arm + _mirror(arm))


def smpl_joints() -> list[J]:
    """24 joints named like SMPL's, centimetres, every joint with 6 channels (position + XYZ
    rotation); ``spine2``'s translation is animated (1 cm)."""
    six = POS + ("Xrotation", "Yrotation", "Zrotation")
    side = lambda s, x: [  # noqa: E731
        J(f"{s}_hip", "pelvis", (x * 9, -8, 0), six), J(f"{s}_knee", f"{s}_hip", (0, -40, 0), six),
        J(f"{s}_ankle", f"{s}_knee", (0, -40, -1), six), J(f"{s}_foot", f"{s}_ankle", (0, -5, 12), six, end=(0, 0, 4)),
        J(f"{s}_collar", "spine3", (x * 7, 12, 0), six), J(f"{s}_shoulder", f"{s}_collar", (x * 12, 3, 0), six, amp=15),
        J(f"{s}_elbow", f"{s}_shoulder", (x * 27, 0, 0), six, amp=10), J(f"{s}_wrist", f"{s}_elbow", (x * 25, 0, 0), six),
        J(f"{s}_hand", f"{s}_wrist", (x * 8, 0, 0), six, end=(x * 6, 0, 0))]
    trunk = [J("pelvis", None, (0, 0, 0), six), J("spine1", "pelvis", (0, 10, 0), six),
             J("spine2", "spine1", (0, 13, 0), six, wobble=1.0), J("spine3", "spine2", (0, 6, 0), six),
             J("neck", "spine3", (0, 20, 0), six), J("head", "neck", (0, 9, 2), six, end=(0, 18, 0))]
    return trunk + side("L", 1) + side("R", -1)


def seventy_joints() -> list[J]:
    """70 joints, millimetres: a body with two-segment feet, jaw and eyes, a zero-length forearm
    twist joint and four phalanges for each of five fingers per hand.  Finger tips have ``CHANNELS 0``, the eyes no CHANNELS line at
    all, the knees one channel (Xrotation), the elbows two (Zrotation Yrotation)."""
    zyx = ROT
    leg = [J("LeftUpLeg", "Hips", (90, -60, 0)), J("LeftLeg", "LeftUpLeg", (0, -420, 0), ("Xrotation",)),
           J("LeftFoot", "LeftLeg", (0, -400, 0)), J("LeftToeBase", "LeftFoot", (0, -50, 120)),
           J("LeftToeEnd", "LeftToeBase", (0, 0, 40), end=(0, 0, 20))]
    arm = [J("LeftShoulder", "Spine2", (30, 150, 0)), J("LeftArm", "LeftShoulder", (140, 20, 0), amp=15),
           J("LeftForeArm", "LeftArm", (280, 0, 0), ("Zrotation", "Yrotation"), amp=10),
           J("LeftForeArmRoll", "LeftForeArm", (0, 0, 0), ("Xrotation",), amp=10),  # zero-length twist joint
           J("LeftHand", "LeftForeArmRoll", (250, 0, 0))]
    for f, (dz, n) in enumerate(((30, "Thumb"), (20, "Index"), (0, "Middle"), (-20, "Ring"), (-35, "Pinky"))):
        parent = "LeftHand"
        for k, L in enumerate((0 if n == "Thumb" else 60, 40, 25, 20)):
            name = f"LeftHand{n}{k + 1}"
            tip = k == 3
            arm.append(J(name, parent, (L, 0, dz if k == 0 else 0), () if tip else zyx, amp=5,
                         end=(15, 0, 0) if tip else None))
            parent = name
    body = [J("Hips", None, (0, 0, 0), POS + zyx), J("Spine", "Hips", (0, 100, 0)), J("Spine1", "Spine", (0, 120, 0)),
            J("Spine2", "Spine1", (0, 120, 0)), J("Neck", "Spine2", (0, 160, 0)), J("Head", "Neck", (0, 100, 20)),
            J("HeadTop", "Head", (0, 150, 0), end=(0, 30, 0)), J("Jaw", "Head", (0, -20, 60), end=(0, -40, 40)),
            J("LeftEye", "Head", (30, 40, 80), None, end=(0, 0, 15)),
            J("RightEye", "Head", (-30, 40, 80), None, end=(0, 0, 15))]
    return body + leg + _mirror(leg) + arm + _mirror(arm)


def bvh_text(joints: list[J], *, fps: float = 30.0, seconds: float = 2.0, floor_gap: float = 0.0,
             seed: int = 0) -> str:
    """A BVH file of ``joints`` standing on the floor (its lowest joint ``floor_gap`` units up)
    with every rotation channel moving sinusoidally (``J.amp`` degrees, random phases, 0.5-1 Hz)
    and the root bobbing 1 % of its height."""
    rng = np.random.default_rng(seed)
    idx = {j.name: k for k, j in enumerate(joints)}
    rest = np.zeros((len(joints), 3))
    for k, j in enumerate(joints):
        rest[k] = np.asarray(j.offset, float) + (rest[idx[j.parent]] if j.parent else 0)
    lift = -rest[:, 1].min() + floor_gap
    lines = ["HIERARCHY"]
    order: list[int] = []  # depth-first: the order of the MOTION columns

    def emit(k: int, depth: int) -> None:
        order.append(k)
        j, pad = joints[k], "  " * depth
        lines.append(f"{pad}{'ROOT' if j.parent is None else 'JOINT'} {j.name}")
        lines.append(pad + "{")
        lines.append(f"{pad}  OFFSET {' '.join(f'{v:.5f}' for v in j.offset)}")
        if j.channels is not None:
            lines.append(f"{pad}  CHANNELS {len(j.channels)}" + "".join(" " + c for c in j.channels))
        for c in (c for c, jj in enumerate(joints) if jj.parent == j.name):
            emit(c, depth + 1)
        if j.end is not None:
            lines.extend([f"{pad}  End Site", f"{pad}  {{",
                          f"{pad}    OFFSET {' '.join(f'{v:.5f}' for v in j.end)}", f"{pad}  }}"])
        lines.append(pad + "}")

    emit(0, 0)
    T = int(round(seconds * fps))
    t = np.arange(T) / fps
    cols = []
    for j in (joints[k] for k in order):
        for c in j.channels or ():
            if c in POS:
                a = "XYZ".index(c[0])
                base = j.offset[a] + (lift if j.parent is None and a == 1 else 0.0)
                amp = 0.01 * lift if j.parent is None and a == 1 else j.wobble
                cols.append(base + amp * np.sin(2 * np.pi * 0.7 * t))
            else:
                cols.append(j.amp * np.sin(2 * np.pi * rng.uniform(0.5, 1.0) * t + rng.uniform(0, 2 * np.pi)))
    frames = np.stack(cols, axis=1) if cols else np.zeros((T, 0))
    lines += ["MOTION", f"Frames: {T}", f"Frame Time: {1.0 / fps:.7f}"]
    lines += [" ".join(f"{v:.5f}" for v in row) for row in frames]
    return "\n".join(lines) + "\n"


SHAPES = {
    "cmu31": (cmu_joints, dict(fps=120.0, floor_gap=0.78)),  # toe joint 4.4 cm up
    "body15": (fifteen_joints, dict(fps=30.0, floor_gap=0.08)),  # ankle 8 cm up
    "smpl24": (smpl_joints, dict(fps=60.0, floor_gap=4.4)),
    "fingers70": (seventy_joints, dict(fps=30.0, floor_gap=44.0)),
}


def _write(tmp_path: Path, shape: str, **over) -> Path:
    make, kw = SHAPES[shape]
    p = tmp_path / f"{shape}.bvh"
    p.write_text(bvh_text(make(), **{**kw, **over}))
    return p


# ----------------------------------------------------------------------------- units


def test_cmu_style_bvh_reads_at_a_plausible_height(tmp_path):
    """31 joints, zero-length hip / lower-back bones, ZYX channels, 120 fps, 1/0.45-inch units: the
    reader takes the CMU unit (a median-bone rule read it in centimetres: a 26 cm person)."""
    c = read_bvh(_write(tmp_path, "cmu31"))
    sk = c.skeleton
    assert sk.n_joints == 31 and c.fps == pytest.approx(120.0, rel=1e-5)
    assert sum(np.linalg.norm(sk.offsets, axis=1) == 0) == 6  # Hips, LHipJoint, RHipJoint, LowerBack, 2 thumbs
    X = c.positions()
    head = X[:, sk.index("Head"), 2]
    assert 1.4 < head.mean() < 1.7  # a standing adult's head joint, metres, Z up
    toes = X[:, [sk.index("LeftToeBase"), sk.index("RightToeBase")], 2]
    assert abs(np.median(toes.min(axis=1)) - 0.78 * UNITS["cmu"]) < 0.02  # 4.4 cm up, legs moving
    assert body_height(sk) == pytest.approx(25.886 * UNITS["cmu"], rel=1e-3)  # 1.46 m
    # the same file with an explicit unit, and a unit that makes the body implausible
    same = read_bvh(tmp_path / "cmu31.bvh", scale="cmu")
    np.testing.assert_allclose(same.positions(), X)
    np.testing.assert_allclose(read_bvh(tmp_path / "cmu31.bvh", scale=0.0254 / 0.45).positions(), X)
    with pytest.raises(BVHUnitsError, match=r"scale='cm' makes the body 0.259 m .* allowed: 0.6-2.2 m.*look like 'cmu'"):
        read_bvh(tmp_path / "cmu31.bvh", scale="cm")
    tiny = read_bvh(tmp_path / "cmu31.bvh", scale="cm", height_range=None)  # check off: read as asked
    assert tiny.positions()[:, sk.index("Head"), 2].mean() < 0.3


@pytest.mark.parametrize("unit, factor", [("m", 1.0), ("cm", 100.0), ("mm", 1000.0), ("in", 1 / 0.0254)])
def test_units_inferred_from_the_body_height(tmp_path, unit, factor):
    """The same metric body written in m, cm, mm and inches reads back at the same size."""
    joints = fifteen_joints()
    for j in joints:
        j.offset = tuple(v * factor for v in j.offset)
        j.end = None if j.end is None else tuple(v * factor for v in j.end)
    p = tmp_path / f"b_{unit}.bvh"
    p.write_text(bvh_text(joints, floor_gap=0.08 * factor))
    c = read_bvh(p)
    assert body_height(c.skeleton) == pytest.approx(1.593, abs=1e-3)
    assert c.positions()[:, c.skeleton.index("Head"), 2].mean() == pytest.approx(1.62, abs=0.01)


def test_implausible_bodies_raise_a_named_error(tmp_path):
    joints = fifteen_joints()
    for j in joints:  # 1.66 m head to ankle at 1/200 of its size: no unit tried makes it human
        j.offset = tuple(v * 0.005 for v in j.offset)
    p = tmp_path / "doll.bvh"
    p.write_text(bvh_text(joints))
    with pytest.raises(BVHUnitsError) as info:
        read_bvh(p)
    msg = str(info.value)
    assert str(p) in msg and "0.007965 file units from head to ankle" in msg and "m in cmu" in msg
    assert "pass scale=" in msg and isinstance(info.value, BVHError) and isinstance(info.value, ValueError)
    assert read_bvh(p, height_range=None).n_frames == 60
    for bad, message in ((0.0, "scale=0.0; allowed"), ("furlong", "scale='furlong'; allowed"), (True, "scale=True")):
        with pytest.raises(BVHError, match=message):
            read_bvh(p, scale=bad)
    with pytest.raises(BVHError, match=r"height_range=\(2, 1\); allowed"):
        read_bvh(p, height_range=(2, 1))


def test_non_body_skeletons_keep_the_median_bone_rule():
    """Two joints without head or feet: not measured as a body (no height check); median bone 40
    units -> centimetres, 0.4 -> metres."""
    sk = Skeleton(("a", "b"), np.array([-1, 0]), np.array([[0, 0, 0], [0, 0, -40.0]]))
    assert body_height(sk) is None and infer_scale(sk) == 0.01
    assert infer_scale(Skeleton(("a", "b"), np.array([-1, 0]), np.array([[0, 0, 0], [0, 0, -0.4]]))) == 1.0


# ----------------------------------------------------------------------------- physics on every shape


@pytest.fixture(scope="module")
def shape_clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("shapes")
    return {s: read_bvh(_write(d, s)) for s in SHAPES}


def test_shapes_read(shape_clips):
    got = {s: c.skeleton.n_joints for s, c in shape_clips.items()}
    assert got == {"cmu31": 31, "body15": 15, "smpl24": 24, "fingers70": 70}
    for s, c in shape_clips.items():
        h = body_height(c.skeleton)
        assert 1.2 < h < 1.8, (s, h)
        assert np.isfinite(c.rotations).all() and np.isfinite(c.translations).all()
    smpl = shape_clips["smpl24"]
    spine2 = smpl.skeleton.index("spine2")
    assert np.ptp(smpl.translations[:, spine2, 2]) == pytest.approx(0.02, abs=1e-3)  # 1 cm wobble, Z up


@pytest.mark.parametrize("shape", list(SHAPES))
def test_physics_correction_on_every_shape(shape_clips, shape):
    """Each shape builds, compiles and tracks: finite output, no falls, tracking error < 3 cm."""
    pytest.importorskip("mujoco")
    from scloop.motion.physics import track

    c = shape_clips[shape]
    r = track(c)
    assert r.clip.rotations.shape == c.rotations.shape
    assert np.isfinite(r.clip.rotations).all() and np.isfinite(r.clip.translations).all()
    assert r.falls == 0, shape
    assert r.tracking_error_cm < 3.0, (shape, r.tracking_error_cm)


def test_animated_translation_is_simulated_on_a_rigid_bone(shape_clips):
    """smpl24's spine2 has position channels that move 1 cm: the humanoid is built on the mean
    bone and the output carries that rigid bone (what was simulated)."""
    pytest.importorskip("mujoco")
    from scloop.motion.physics import track
    from scloop.motion.physics.tracking import model_skeleton

    c = shape_clips["smpl24"]
    j = c.skeleton.index("spine2")
    sk, changed = model_skeleton(c)
    assert list(np.flatnonzero(changed)) == [j]
    np.testing.assert_allclose(sk.offsets[j], c.translations[:, j].mean(axis=0))
    out = track(c).clip
    np.testing.assert_allclose(out.translations[:, j], np.broadcast_to(sk.offsets[j], out.translations[:, j].shape))
    others = [k for k in range(c.skeleton.n_joints) if k not in (0, j)]
    np.testing.assert_array_equal(out.translations[:, others], c.translations[:, others])


def test_cmu_style_clip_through_the_correction_plugin(shape_clips):
    """The 31-joint CMU-style clip as windows of the representation through the `physics`
    correction plugin (decode, simulate, encode), as a motion loop would run it."""
    pytest.importorskip("mujoco")
    from scloop.core.types import CorrectionContext, Data
    from scloop.corrections.motion import make_physics
    from scloop.motion.representation import canonical_skeleton, encode, windows

    c = shape_clips["cmu31"]
    x = windows(encode(c, fps=30.0), 30, 15)
    sk = canonical_skeleton(c.skeleton)
    ctx = CorrectionContext(real=Data(x, np.zeros(len(x), int)), meta={"skeleton": sk, "fps": 30.0})
    corr = make_physics().prepare(ctx, rng=np.random.default_rng(0))
    out = corr(Data(x, np.zeros(len(x), int)), rng=np.random.default_rng(0))
    assert out.data.x.shape == x.shape and np.isfinite(out.data.x).all()
    assert out.diagnostics["falls"] == 0 and out.diagnostics["tracking_error_cm"] < 3.0
