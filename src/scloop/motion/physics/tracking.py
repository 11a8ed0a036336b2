"""Physics self-correction of a clip by harnessed PD tracking in MuJoCo (docs/paper.md §3.3; the
paper uses UHC, here a simpler tracker whose behaviour is measured in docs/motion.md).

Per clip:

1. Reference: pelvis world pose (x_ref, R_ref) from FK, hinge angles ``q_ref`` = ZXY Euler angles
   of ``Q_j^T R_local[t, j]`` unwrapped in time, ``Q_j`` the chordal mean of the clip's local
   rotations of joint j (the model's neutral, see :mod:`.mjcf`), velocities by central differences.
2. Model: :func:`~scloop.motion.physics.mjcf.build_mjcf` with that neutral, the clip's sole
   orientation (mean "down" direction in each ankle frame over the clip's stance frames) and hinge
   ranges = the reference range widened by 0.3 rad and at least +-2.1 rad.  Compiled models are
   cached per process by the model's inputs (building one costs ~5 ms: the text and one compile).
3. Control, per substep (dt = 1/(fps * n_sub), n_sub = round(1 / (fps * timestep))): position
   actuators with target ``q_ref + c (kv/kp) q_dot_ref`` (reference-velocity feed-forward,
   ``c = velocity_ff``) at the end of the substep, linearly interpolated between frames; harness
   = six position actuators pulling the pelvis site towards mocap sites at the reference pelvis
   pose with feed-forward ``c (kv/kp) v_ref`` (so the harness damps mostly the velocity *error*,
   not the absolute velocity; probe pitfall 5); force caps ``harness * m g`` horizontally per
   axis, ``harness * vertical_cap * m g`` vertically, torque ``harness * m g * 1 m`` per axis.
   Integral action: each hinge target also gets ``I_j``, updated once per frame by
   ``I_j += (q_ref - q) / (fps * integral_time)`` from the error at the frame boundary and held
   over the frame's substeps (clipped to +-``integral_cap`` rad, reset at a restart).  Without it
   a PD joint settles off its reference by load / kp -- the stance leg under the body's weight,
   the arms under gravity -- the same way in every clip: a *systematic* bias (feet 0.25
   group-std behind the pelvis on real windows, measured in docs/motion.md), which a
   self-consuming loop accumulates generation after generation.  With integral_time 0.1 s the
   mean per-joint offset (pelvis-relative, 20 clean clips) drops from 0.37 to 0.25 cm (measured
   with a per-substep update) and the tracking error from 1.01 to 0.76 cm (at the tracker's
   older defaults; the current ones track at 0.91 cm with less foot skating, docs/motion.md).
4. Start from the reference first frame and velocities; record every frame; on a fall (pelvis
   below ``fall_ratio`` x reference pelvis height for more than ``fall_seconds``, or the head below
   the pelvis while the reference holds it more than 20 cm above -- a cartwheel, handstand or
   lying body in the reference is not a fall) restart from the reference state at that frame and
   count it.
5. Output clip: local rotations from the simulated hinge angles, pelvis local rotation and
   translation from the simulated free joint (merged root joints keep their reference values, as
   do non-pelvis translations -- except joints whose translation the clip animates (BVH position
   channels): the model is built on their mean bone (:func:`model_skeleton`), and the output
   carries that rigid bone, as simulated).

Throughput (benchmarks/bench_motion.py): ~80 % of the time is ``mj_step``; the Python substep
loop binds MjData's arrays once, the output Euler angles are converted in numpy, and a model is
compiled once per distinct input (cached by :func:`_model_key`).
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from scloop.motion.physics.mjcf import EULER_ORDER, HARNESS, G, build_mjcf, layout
from scloop.motion.skeleton import Clip, Skeleton, fk


@dataclass(frozen=True)
class TrackResult:
    """``clip``: simulated motion (same skeleton, frames, fps); ``falls``: restarts;
    ``harness_load``: mean over frames of |harness force| / (m g); ``tracking_error_cm``: mean
    per-joint world position error output vs input (cm); ``sim_seconds``: simulated motion time;
    ``wall_seconds``: wall time of this call (model build included)."""

    clip: Clip
    falls: int
    harness_load: float
    tracking_error_cm: float
    sim_seconds: float
    wall_seconds: float


_MODEL_CACHE: "OrderedDict[str, object]" = OrderedDict()
_CACHE_SIZE = 64


def skeleton_digest(skeleton: Skeleton) -> str:
    h = hashlib.sha256()
    h.update("\0".join(skeleton.names).encode())
    h.update(np.asarray(skeleton.parents, dtype=np.int64).tobytes())
    h.update(np.round(np.asarray(skeleton.offsets, dtype=float), 9).tobytes())
    return h.hexdigest()[:16]


def _model_key(skeleton: Skeleton, build_kw: dict) -> str:
    """Cache key of the model :func:`build_mjcf` builds from ``skeleton`` and ``build_kw``."""
    h = hashlib.sha256(skeleton_digest(skeleton).encode())
    for name in sorted(build_kw):
        v = build_kw[name]
        h.update(name.encode())
        if isinstance(v, dict):
            for a in sorted(v):
                h.update(str(a).encode() + np.asarray(v[a], dtype=float).tobytes())
        elif isinstance(v, np.ndarray):
            h.update(str(v.dtype).encode() + v.tobytes())
        else:
            h.update(repr(v).encode())
    return h.hexdigest()


def _model(key: str, skeleton: Skeleton, build_kw: dict):
    """The compiled humanoid for ``build_kw`` (:func:`build_mjcf` with ``compiled=True``), cached
    per process by ``key`` (building costs ~5 ms: the MJCF text and one compile)."""
    m = _MODEL_CACHE.get(key)
    if m is None:
        m = build_mjcf(skeleton, compiled=True, **build_kw)
        _MODEL_CACHE[key] = m
        if len(_MODEL_CACHE) > _CACHE_SIZE:
            _MODEL_CACHE.popitem(last=False)
    else:
        _MODEL_CACHE.move_to_end(key)
    return m


def chordal_mean(R: np.ndarray) -> np.ndarray:
    """(T, ..., 3, 3) -> (..., 3, 3): the rotation closest (Frobenius) to the mean matrix."""
    U, _, Vt = np.linalg.svd(R.mean(axis=0))
    D = np.ones(U.shape[:-1])
    D[..., -1] = np.sign(np.linalg.det(U @ Vt))
    return (U * D[..., None, :]) @ Vt


def _euler_zxy_matrix(ang: np.ndarray) -> np.ndarray:
    """(..., 3) intrinsic ZXY angles (a, b, c) -> (..., 3, 3) ``Rz(a) Rx(b) Ry(c)`` (what
    ``Rotation.from_euler("ZXY", ...)`` gives, to rounding, at a tenth of its cost)."""
    ca, sa = np.cos(ang[..., 0]), np.sin(ang[..., 0])
    cb, sb = np.cos(ang[..., 1]), np.sin(ang[..., 1])
    cc, sc = np.cos(ang[..., 2]), np.sin(ang[..., 2])
    R = np.empty(ang.shape[:-1] + (3, 3))
    R[..., 0, 0] = ca * cc - sa * sb * sc
    R[..., 0, 1] = -sa * cb
    R[..., 0, 2] = ca * sc + sa * sb * cc
    R[..., 1, 0] = sa * cc + ca * sb * sc
    R[..., 1, 1] = ca * cb
    R[..., 1, 2] = sa * sc - ca * sb * cc
    R[..., 2, 0] = -cb * sc
    R[..., 2, 1] = sb
    R[..., 2, 2] = cb * cc
    return R


def _quat_wxyz(R: np.ndarray) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(R.reshape(-1, 3, 3)).as_quat()  # x y z w
    q = q[:, [3, 0, 1, 2]]
    for i in range(1, len(q)):  # sign continuity for interpolation
        if np.dot(q[i], q[i - 1]) < 0:
            q[i] = -q[i]
    return q


def _body_angvel(R: np.ndarray, fps: float) -> np.ndarray:
    """(T, 3, 3) world rotations -> (T, 3) angular velocity in the body frame (rad/s),
    ``log(R_{t-1}^T R_{t+1}) / (2 / fps)`` (one-sided at the ends)."""
    from scipy.spatial.transform import Rotation

    T = len(R)
    if T < 2:
        return np.zeros((T, 3))
    a = np.r_[0, np.arange(T - 1)]
    b = np.r_[np.arange(1, T), T - 1]
    rel = np.einsum("tba,tbc->tac", R[a], R[b])
    return Rotation.from_matrix(rel).as_rotvec() * fps / (b - a)[:, None]


def _stance(X: np.ndarray, ankle: int, toe: int | None) -> np.ndarray:
    """Stance frames of a foot: ankle (and toe joint, if any) within 2 cm of their clip minimum
    height (relative, so a clip shifted up or down gives the same frames)."""
    za = X[:, ankle, 2]
    sel = za < za.min() + 0.02
    if toe is not None:
        zt = X[:, toe, 2]
        sel &= zt < zt.min() + 0.02
    if sel.sum() < 1:
        sel = za <= za.min()
    return sel


def _foot_down(clip: Clip, X: np.ndarray, Gw: np.ndarray, ankle: int, toe: int | None) -> np.ndarray:
    """Mean world-down direction in the ankle frame over the stance frames (:func:`_stance`)."""
    sel = _stance(X, ankle, toe)
    down = -Gw[sel, ankle, 2, :]  # rows of G^T e_z -> G[:, 2, :] is e_z in the ankle frame
    d = down.mean(axis=0)
    return d / np.linalg.norm(d)


def _foot_forward(clip: Clip, X: np.ndarray, Gw: np.ndarray, ankle: int, pelvis: int) -> np.ndarray:
    """A foot without toes: the body's horizontal forward direction (the pelvis' heading axis)
    over the stance frames, in the ankle frame, averaged."""
    from scloop.motion.representation import heading_axis

    sel = _stance(X, ankle, None)
    f = Gw[sel, pelvis] @ heading_axis(clip.skeleton)
    f[:, 2] = 0.0
    f /= np.maximum(np.linalg.norm(f, axis=1, keepdims=True), 1e-9)
    v = np.einsum("tba,tb->a", Gw[sel, ankle], f)
    return v / max(np.linalg.norm(v), 1e-9)


def model_skeleton(clip: Clip) -> tuple[Skeleton, np.ndarray]:
    """The rigid skeleton the humanoid is built on, and which joints it changed: a non-root joint
    whose local translation moves in the clip (a BVH joint with position channels) or stays away
    from its OFFSET gets the clip's mean translation as its bone (the simulated bones are rigid)."""
    sk = clip.skeleton
    lay = layout(sk)
    off = np.asarray(sk.offsets, dtype=float)
    H = np.asarray(lay.hinged, dtype=int)
    changed = np.zeros(sk.n_joints, bool)
    if len(H):
        dev = np.abs(clip.translations[:, H] - off[None, H]).max(axis=(0, 2))
        changed[H[dev > 1e-6]] = True
    if not changed.any():
        return sk, changed
    off = off.copy()
    off[changed] = clip.translations[:, changed].mean(axis=0)
    return Skeleton(sk.names, sk.parents, off), changed


@dataclass(frozen=True)
class _Prepared:
    key: str  # model cache key
    build_kw: dict  # build_mjcf keywords
    skeleton: Skeleton  # the rigid skeleton the model is built on (model_skeleton)
    q: np.ndarray  # (T, H) hinge angles
    qd: np.ndarray
    root_pos: np.ndarray  # (T, 3)
    root_quat: np.ndarray  # (T, 4) wxyz
    root_v: np.ndarray  # (T, 3) world
    root_w: np.ndarray  # (T, 3) body frame
    X: np.ndarray
    Gw: np.ndarray
    neutral: np.ndarray
    locked: np.ndarray  # (J, 3)


def _prepare(clip: Clip, mass_kg: float, model_kwargs: dict, lock_tol: float = 0.035) -> _Prepared:
    from scipy.spatial.transform import Rotation

    sk, _ = model_skeleton(clip)
    lay = layout(sk)
    T, J = clip.n_frames, sk.n_joints
    X, Gw = fk(sk.parents, clip.rotations, clip.translations)
    Q = np.broadcast_to(np.eye(3), (J, 3, 3)).copy()
    H = list(lay.hinged)
    Q[H] = chordal_mean(clip.rotations[:, H])
    E = np.einsum("jba,tjbc->tjac", Q[H], clip.rotations[:, H])
    ang = Rotation.from_matrix(E.reshape(-1, 3, 3)).as_euler(EULER_ORDER).reshape(T, len(H), 3)
    ang = np.unwrap(ang, axis=0)
    locked = np.zeros((J, 3), bool)
    locked[H] = np.ptp(ang, axis=0) < lock_tol
    ranges = np.tile([-2.1, 2.1], (J, 3, 1))
    ranges[H, :, 0] = np.minimum(ang.min(axis=0) - 0.3, -2.1)
    ranges[H, :, 1] = np.maximum(ang.max(axis=0) + 0.3, 2.1)
    down = {}
    parents = np.asarray(sk.parents)
    for t in lay.toes:
        a = int(parents[t])
        down[a] = _foot_down(clip, X, Gw, a, t)
    fwd = {}
    for a in lay.flat:
        down[a] = _foot_down(clip, X, Gw, a, None)
        fwd[a] = _foot_forward(clip, X, Gw, a, lay.pelvis)
    # quantise so that near-identical clips share a compiled model; keeps the MJCF text short
    Qq = np.round(Q, 4)
    Qq = chordal_mean(Qq[None])  # re-orthonormalise
    down = {a: np.round(v, 3) / np.linalg.norm(np.round(v, 3)) for a, v in down.items()}
    fwd = {a: np.round(v, 3) for a, v in fwd.items()}
    build_kw = dict(mass_kg=mass_kg, neutral=Qq, foot_down=down, ranges=np.round(ranges, 2), locked=locked,
                    **({"foot_forward": fwd} if fwd else {}), **model_kwargs)
    if not np.allclose(Qq[H], Q[H], atol=1e-3):
        raise AssertionError("neutral quantisation failed")  # pragma: no cover
    E = np.einsum("jba,tjbc->tjac", Qq[H], clip.rotations[:, H])
    ang = np.unwrap(Rotation.from_matrix(E.reshape(-1, 3, 3)).as_euler(EULER_ORDER).reshape(T, len(H), 3), axis=0)
    ang[:, locked[H]] = 0.0
    q = ang.reshape(T, -1)
    fps = clip.fps
    qd = np.gradient(q, axis=0) * fps if T > 1 else np.zeros_like(q)
    p = lay.pelvis
    rp = X[:, p]
    rv = np.gradient(rp, axis=0) * fps if T > 1 else np.zeros_like(rp)
    return _Prepared(_model_key(sk, build_kw), build_kw, sk, q, qd, rp, _quat_wxyz(Gw[:, p]), rv,
                     _body_angvel(Gw[:, p], fps), X, Gw, Qq, locked)


def _interp(a: np.ndarray, n_sub: int) -> np.ndarray:
    """(T, ...) per frame -> ((T-1) n_sub, ...) values at the end of each substep."""
    T = len(a)
    s = (np.arange(1, (T - 1) * n_sub + 1)) / n_sub  # frame time of each substep end
    i0 = np.minimum(np.floor(s).astype(int), T - 2)
    f = (s - i0).reshape(-1, *([1] * (a.ndim - 1)))
    return a[i0] * (1 - f) + a[i0 + 1] * f


def _frame_average(sub: np.ndarray, n_sub: int, T: int, restarted: np.ndarray) -> np.ndarray:
    """(S, nq) substep states -> (T, nq): frame i averages substeps i n_sub - h .. i n_sub + h
    (h = n_sub // 2, clipped to the record; frames at a restart keep their reset state).  The
    free joint's quaternion (qpos[3:7]) is averaged and renormalised, each sample's sign first
    aligned with the frame's own substep."""
    h = n_sub // 2
    centre = np.arange(T) * n_sub
    if h == 0:
        return sub[centre].copy()
    # (T, 2h+1) window indices, vectorised over frames (a per-frame Python loop cost ~4 % of the
    # tracker); indices past either end of the record get weight 0, so a frame near an end
    # averages the substeps that exist
    idx = centre[:, None] + np.arange(-h, h + 1)[None, :]
    valid = (idx >= 0) & (idx <= len(sub) - 1)
    w = sub[np.clip(idx, 0, len(sub) - 1)]  # (T, 2h+1, nq)
    q = w[:, :, 3:7]
    q *= np.where(np.einsum("tkj,tj->tk", q, q[:, h]) < 0, -1.0, 1.0)[:, :, None]
    out = (w * valid[:, :, None]).sum(axis=1) / valid.sum(axis=1)[:, None]
    out[:, 3:7] /= np.linalg.norm(out[:, 3:7], axis=1, keepdims=True)
    out[restarted] = sub[centre[restarted]]
    return out


def track(clip: Clip, *, harness: float = 1.0, mass_kg: float = 65.0, vertical_cap: float = 0.5,
          torque_cap: float = 1.0, timestep: float = 1.0 / 240.0, velocity_ff: float = 0.85,
          fall_ratio: float = 0.5, fall_seconds: float = 0.2, lock_tol: float = 0.035,
          integral_time: float = 0.1, integral_cap: float = 0.3, model_kwargs: dict | None = None) -> TrackResult:
    """Physically corrected copy of ``clip`` (module docstring).  ``harness`` >= 0 is the
    correction strength in body weights (0 = pure physics).  ``velocity_ff`` scales the
    reference-velocity feed-forward of the joints and the harness (1 = full: the PD damps only the
    velocity error; 0 = off: it damps the whole velocity).  The default 0.85 damps 15 % of the
    reference velocity: smoother output (clean-clip jerk x1.07 instead of x1.10, foot skating
    x1.17 instead of x1.21 with the other defaults; docs/motion.md) for ~0.1 cm more tracking
    error; lower it further for jittery input.  Hinge axes
    whose reference angle spans less than ``lock_tol`` rad over the clip are left out of the model
    (held at the neutral; saves stepping time).  ``integral_time`` (s; 0 = off) and
    ``integral_cap`` (rad): the integral action of step 3 of the module docstring."""
    import mujoco
    from scipy.spatial.transform import Rotation

    t0 = time.perf_counter()
    if not np.isfinite(harness) or harness < 0:
        raise ValueError(f"track: harness={harness!r}; must be a finite number >= 0")
    if clip.n_frames < 2:
        raise ValueError(f"track: clip {clip.name!r} has {clip.n_frames} frame(s); need >= 2")
    if not (np.isfinite(integral_time) and integral_time >= 0 and np.isfinite(integral_cap) and integral_cap >= 0):
        raise ValueError(f"track: integral_time={integral_time!r}, integral_cap={integral_cap!r}; must be finite numbers >= 0")
    if not (np.isfinite(clip.rotations).all() and np.isfinite(clip.translations).all()):
        raise ValueError(f"track: clip {clip.name!r} has non-finite rotations or translations")
    sk = clip.skeleton
    lay = layout(sk)
    T, fps = clip.n_frames, float(clip.fps)
    if not (np.isfinite(fps) and 0.5 <= fps <= 5000):
        raise ValueError(f"track: clip {clip.name!r} at {fps!r} fps; allowed: 0.5 - 5000 fps")
    n_sub = max(1, int(round(1.0 / (fps * timestep))))
    kw = dict(model_kwargs or {})
    kw["timestep"] = 1.0 / (fps * n_sub)
    prep = _prepare(clip, mass_kg, kw, lock_tol)
    model_sk, changed = model_skeleton(clip)
    m = _model(prep.key, prep.skeleton, prep.build_kw)
    d = mujoco.MjData(m)
    H = list(lay.hinged)
    # hinge qpos/dof addresses, in the order of prep.q
    free = ~prep.locked[H].reshape(-1)  # unlocked axes, in the order of prep.q's columns
    axes = [(k, ax) for k in H for ax in "zxy"]
    axes = [a for a, f in zip(axes, free) if f]
    jids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_JOINT, f"{lay.body[k]}_{ax}") for k, ax in axes]
    qadr = m.jnt_qposadr[jids]
    vadr = m.jnt_dofadr[jids]
    aids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, f"a_{lay.body[k]}_{ax}") for k, ax in axes]
    q_ref, qd_ref = prep.q[:, free], prep.qd[:, free]
    hids = [mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_ACTUATOR, n) for n in HARNESS]
    if min(aids + hids) < 0 or sorted(aids + hids) != list(range(m.nu)):
        raise AssertionError("actuator layout")  # pragma: no cover
    W = mass_kg * G
    caps = harness * W * np.array([1.0, 1.0, vertical_cap, torque_cap, torque_cap, torque_cap])
    m.actuator_forcerange[hids, 0] = -caps
    m.actuator_forcerange[hids, 1] = caps
    m.actuator_forcelimited[hids] = 1
    kp = m.actuator_gainprm[:, 0]
    kv = -m.actuator_biasprm[:, 2]
    ratio = kv / np.maximum(kp, 1e-9) * velocity_ff
    # ---- per-substep tables
    ctrl_frame = np.zeros((T, m.nu))
    ctrl_frame[:, aids] = q_ref + ratio[aids] * qd_ref
    ctrl_frame[:, hids[:3]] = ratio[hids[:3]] * prep.root_v
    ctrl_frame[:, hids[3:]] = ratio[hids[3:]] * prep.root_w
    ctrl_sub = _interp(ctrl_frame, n_sub)
    use_i = integral_time > 0
    ctrl_off = np.zeros(m.nu)  # the integral term on the hinge actuators, 0 on the harness
    if use_i:
        i_gain = (1.0 / fps) / integral_time
        i_term = np.zeros(len(aids))
    pos_sub = _interp(prep.root_pos, n_sub)
    quat_sub = _interp(prep.root_quat, n_sub)
    quat_sub /= np.linalg.norm(quat_sub, axis=1, keepdims=True)
    mpos = np.zeros((len(pos_sub), 2, 3))
    mpos[:, 0] = pos_sub
    mpos[:, 1] = pos_sub
    mquat = np.zeros((len(pos_sub), 2, 4))
    mquat[:, 0, 0] = 1.0
    mquat[:, 1] = quat_sub
    bid_ref = [m.body_mocapid[mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, n)] for n in ("ref_pos", "ref_rot")]
    if bid_ref != [0, 1]:
        raise AssertionError("mocap layout")  # pragma: no cover
    head = next((k for k in range(sk.n_joints) if "head" in sk.names[k].lower() and k not in lay.merged),
                int(np.argmax(prep.X[0, :, 2])))
    if head in lay.merged:  # pragma: no cover - merged joints sit below the pelvis only in odd files
        head = lay.pelvis
    head_bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, lay.body[head])
    pel_bid = mujoco.mj_name2id(m, mujoco.mjtObj.mjOBJ_BODY, lay.body[lay.pelvis])
    # a fall is the head below the pelvis only where the reference holds it clearly above (a
    # handstand, cartwheel or lying body in the reference is not a fall)
    upright = prep.X[:, head, 2] - prep.X[:, lay.pelvis, 2] > 0.2

    def reset(i: int) -> None:
        d.qpos[:3] = prep.root_pos[i]
        d.qpos[3:7] = prep.root_quat[i]
        d.qpos[qadr] = q_ref[i]
        d.qvel[:] = 0.0
        d.qvel[:3] = prep.root_v[i]
        d.qvel[3:6] = prep.root_w[i]
        d.qvel[vadr] = qd_ref[i]
        d.act[:] = 0.0
        d.qacc_warmstart[:] = 0.0
        d.ctrl[:] = ctrl_frame[i]
        d.mocap_pos[:] = mpos[max(i * n_sub - 1, 0)]
        d.mocap_quat[:] = mquat[max(i * n_sub - 1, 0)]
        mujoco.mj_forward(m, d)

    mujoco.mj_resetData(m, d)
    reset(0)
    # every substep's state is kept; a frame's output is the mean over the substeps within half a
    # frame of it (a box filter at the frame rate): sampling one substep per frame would alias
    # the contact chatter between frames into jerk
    sub_rec = np.empty(((T - 1) * n_sub + 1, m.nq))
    sub_rec[0] = d.qpos
    load = np.zeros(T)
    falls, low = 0, 0
    fall_frames = fall_seconds * fps
    zref = prep.root_pos[:, 2]
    step = mujoco.mj_step
    hl = hids[:3]
    restarted = np.zeros(T, dtype=bool)
    restarted[0] = True  # frame 0 is the reference state itself
    # MjData's arrays bound once: each attribute access builds a new numpy view (~0.3 us), and
    # the substep loop below is the tracker's Python hot spot
    ctrl, mocap_pos, mocap_quat, qpos, xpos, act_force = (d.ctrl, d.mocap_pos, d.mocap_quat, d.qpos, d.xpos,
                                                         d.actuator_force)
    for i in range(1, T):
        base = (i - 1) * n_sub
        if use_i:
            # once per frame (zero-order hold over its substeps) from the error at the frame
            # boundary: the integral time spans 3 frames, and a per-substep update in Python cost
            # 15% of the tracker's throughput (benchmarks/bench_motion.py)
            i_term += i_gain * (q_ref[i - 1] - qpos[qadr])
            np.clip(i_term, -integral_cap, integral_cap, out=i_term)
            ctrl_off[aids] = i_term
            block = ctrl_sub[base: base + n_sub] + ctrl_off
        else:
            block = ctrl_sub[base: base + n_sub]
        for k in range(n_sub):
            ctrl[:] = block[k]
            mocap_pos[:] = mpos[base + k]
            mocap_quat[:] = mquat[base + k]
            step(m, d)
            sub_rec[base + k + 1] = qpos
        load[i] = np.linalg.norm(act_force[hl])
        zp = xpos[pel_bid, 2]
        low = low + 1 if zp < fall_ratio * zref[i] else 0
        if low > fall_frames or (xpos[head_bid, 2] < zp and upright[i]) or not np.isfinite(qpos).all():
            falls += 1
            low = 0
            reset(i)
            if use_i:
                i_term[:] = 0.0
            sub_rec[i * n_sub] = d.qpos
            restarted[i] = True
    qpos_rec = _frame_average(sub_rec, n_sub, T, restarted)
    # ---- back to a clip
    rot = clip.rotations.copy()
    trans = clip.translations.copy()
    ang = np.zeros((T, 3 * len(H)))
    ang[:, free] = qpos_rec[:, qadr]
    ang = ang.reshape(T, len(H), 3)
    E = _euler_zxy_matrix(ang)
    rot[:, H] = np.einsum("jab,tjbc->tjac", prep.neutral[H], E)
    if changed.any():  # joints with animated translations were simulated on rigid bones
        trans[:, changed] = model_sk.offsets[changed]
    q = qpos_rec[:, 3:7]
    Rw = Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()
    xw = qpos_rec[:, :3]
    p = lay.pelvis
    par = int(np.asarray(sk.parents)[p])
    if par < 0:
        rot[:, p], trans[:, p] = Rw, xw
    else:  # merged root joints keep their reference transform
        Gp, Xp = prep.Gw[:, par], prep.X[:, par]
        rot[:, p] = np.einsum("tba,tbc->tac", Gp, Rw)
        trans[:, p] = np.einsum("tba,tb->ta", Gp, xw - Xp)
    out = Clip(sk, rot, trans, clip.fps, name=clip.name, labels=dict(clip.labels))
    err = float(np.linalg.norm(out.positions() - prep.X, axis=-1).mean() * 100.0)
    return TrackResult(out, falls, float(load[1:].mean() / W), err, (T - 1) / fps, time.perf_counter() - t0)


def _worker_init() -> None:
    for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[v] = "1"


def _track_star(args):
    clip, harness, kwargs = args
    return track(clip, harness=harness, **kwargs)


def track_many(clips: Sequence[Clip], harness: float = 1.0, processes: int = 1, **kwargs) -> list[TrackResult]:
    """:func:`track` on every clip, in order.  ``processes`` > 1 uses that many spawned worker
    processes (one thread each; compiled models are cached per process)."""
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"track_many: processes={processes!r}; must be an integer >= 1")
    clips = list(clips)
    if processes == 1 or len(clips) <= 1:
        return [track(c, harness=harness, **kwargs) for c in clips]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    # spawned children inherit the environment at start: one BLAS/OpenMP thread each
    saved = {v: os.environ.get(v) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}
    try:
        _worker_init()
        with ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context("spawn"),
                                 initializer=_worker_init) as ex:
            return list(ex.map(_track_star, [(c, harness, kwargs) for c in clips], chunksize=1))
    finally:
        for v, val in saved.items():
            if val is None:
                os.environ.pop(v, None)
            else:
                os.environ[v] = val
