"""The canonical motion representation: a HumanML3D-like feature vector per frame (docs/paper.md §3.3).

For a skeleton with ``J`` joints (after :func:`canonical_skeleton`) and ``n_feet`` foot joints
(:meth:`Skeleton.foot_joints`), frame ``t`` of a clip sampled at ``fps`` is ``F = 4 + 9 J + n_feet``
numbers (:func:`feature_layout`)::

    root_height    1      z of the root joint (m)
    root_velocity  2      planar root velocity in the heading frame, Rz(-yaw_t) (p_{t+1} - p_t).xy * fps (m/s)
    yaw_rate       1      wrap(yaw_{t+1} - yaw_t) * fps (rad/s), wrap to [-pi, pi)
    rotations      6 J    local joint rotations, 6-D (Zhou et al. 2019, "On the continuity of rotation
                          representations", CVPR: the first two columns of R, [R00 R10 R20 R01 R11 R21]);
                          the root's is its world rotation with the heading removed, Rz(-yaw_t) G_root
    positions      3 J    FK joint positions relative to the root, heading removed: Rz(-yaw_t) (x_j - x_root)
    contacts       n_feet 1.0 where the foot joint is within CONTACT_HEIGHT of its lowest height in
                          the clip AND its horizontal speed is below CONTACT_SPEED, else 0.0

The last frame repeats the previous frame's velocity and yaw rate (there is no next frame).
Heading ``yaw_t`` (:func:`heading`) = the twist about +Z of the root's rotation expressed in a
body frame (forward, left, up) derived from the skeleton's rest offsets (:func:`body_frame`).
Every quantity is expressed in the heading frame or is a height / speed, so the features do not
change when the clip is rotated about Z or translated in the ground plane.

:func:`decode` inverts :func:`encode` from the rotations: it starts at the origin with heading 0
(the absolute start position and facing are not stored), integrates the yaw rate and the planar
velocity (forward Euler, the exact inverse of the forward differences), takes the root height,
maps the 6-D rotations back with Gram-Schmidt and uses the skeleton's bone offsets.  The
``positions`` and ``contacts`` blocks are redundant with the rotations (as in HumanML3D) and are
not used by the decoder.

Root placeholders: many BVH exporters put a static ``joint_Root`` (Bandai-Namco) above the pelvis
and animate the pelvis' own translation.  The representation needs joint 0 to carry the world
motion and every other joint's translation to be its bone offset, so :func:`canonicalize` folds a
root with exactly one child into that child (``R'_c = R_0 R_c``, ``p'_c = p_0 + R_0 p_c``) and
drops it -- the placeholder is not a body point.  :func:`encode` does this itself; pass either the
original or the canonical skeleton to :func:`feature_layout` / :func:`decode`.
"""

from __future__ import annotations

from typing import Sequence

import dataclasses

import numpy as np

from scloop.motion.skeleton import Clip, Skeleton, fk

CONTACT_HEIGHT = 0.05  # m above the foot joint's lowest height in the clip
CONTACT_SPEED = 0.5  # m/s, horizontal speed of the foot joint (central differences)
FPS_RTOL = 1e-5  # relative frame-rate difference treated as equal (no resampling)
TRANSLATION_TOL = 1e-4  # m, allowed |local translation - bone offset| for non-root joints

# ----------------------------------------------------------------------------- rotations


def rotation_to_6d(R: np.ndarray) -> np.ndarray:
    """(..., 3, 3) -> (..., 6): the first two columns ``[R00 R10 R20 R01 R11 R21]``."""
    R = np.asarray(R)
    return np.concatenate([R[..., :, 0], R[..., :, 1]], axis=-1)


def rotation_from_6d(d6: np.ndarray) -> np.ndarray:
    """(..., 6) -> (..., 3, 3) by Gram-Schmidt: ``b1 = a1/|a1|``, ``b2 = normalise(a2 - (b1.a2) b1)``,
    ``b3 = b1 x b2``; columns ``[b1 b2 b3]``.  Exact inverse of :func:`rotation_to_6d` on rotations."""
    d6 = np.asarray(d6, dtype=float)
    a1, a2 = d6[..., :3], d6[..., 3:]
    b1 = a1 / np.linalg.norm(a1, axis=-1, keepdims=True)
    b2 = a2 - np.sum(b1 * a2, axis=-1, keepdims=True) * b1
    b2 = b2 / np.linalg.norm(b2, axis=-1, keepdims=True)
    return np.stack([b1, b2, np.cross(b1, b2)], axis=-1)


def rot_z(angle: np.ndarray) -> np.ndarray:
    """(...,) angles (rad) -> (..., 3, 3) rotations about +Z."""
    angle = np.asarray(angle, dtype=float)
    c, s = np.cos(angle), np.sin(angle)
    o, i = np.zeros_like(angle), np.ones_like(angle)
    return np.stack([np.stack([c, -s, o], -1), np.stack([s, c, o], -1), np.stack([o, o, i], -1)], -2)


def _wrap(a: np.ndarray) -> np.ndarray:
    return (a + np.pi) % (2 * np.pi) - np.pi


def _slerp(R0: np.ndarray, R1: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Spherical interpolation between rotation matrices (N, 3, 3) with weights (N,) in [0, 1]."""
    from scipy.spatial.transform import Rotation

    q0 = Rotation.from_matrix(R0).as_quat()
    q1 = Rotation.from_matrix(R1).as_quat()
    dot = np.sum(q0 * q1, axis=-1)
    q1 = np.where(dot[:, None] < 0, -q1, q1)  # shortest arc
    dot = np.clip(np.abs(dot), -1.0, 1.0)
    theta = np.arccos(dot)
    s = np.sin(theta)
    small = s < 1e-8
    safe = np.where(small, 1.0, s)
    a = np.where(small, 1.0 - w, np.sin((1.0 - w) * theta) / safe)
    b = np.where(small, w, np.sin(w * theta) / safe)
    q = a[:, None] * q0 + b[:, None] * q1
    q /= np.linalg.norm(q, axis=-1, keepdims=True)
    return Rotation.from_quat(q).as_matrix()


def resample(clip: Clip, fps: float) -> Clip:
    """The clip at ``fps``: frame ``k`` is source time ``k / fps`` for ``k = 0 .. floor((T-1) fps /
    fps_src)`` (the last source frame is kept when the ratio is whole).  Rotations are slerped
    (shortest arc), translations linearly interpolated.  Returns ``clip`` itself when the rate
    already matches within FPS_RTOL (files print frame times to a few digits: Bandai's 0.0333333 s
    is 30.00003 fps, which is 30 fps, not a reason to resample)."""
    if not (np.isfinite(fps) and fps > 0):
        raise ValueError(f"resample: fps {fps}; must be a positive number")
    if abs(clip.fps - fps) <= FPS_RTOL * fps:
        return clip
    T, J = clip.n_frames, clip.skeleton.n_joints
    n = int(np.floor((T - 1) * fps / clip.fps + 1e-9)) + 1
    s = np.arange(n) * (clip.fps / fps)
    i0 = np.minimum(np.floor(s + 1e-9).astype(int), max(T - 2, 0))
    i1 = np.minimum(i0 + 1, T - 1)
    w = np.clip(s - i0, 0.0, 1.0)
    trans = (1 - w)[:, None, None] * clip.translations[i0] + w[:, None, None] * clip.translations[i1]
    R0 = clip.rotations[i0].reshape(-1, 3, 3)
    R1 = clip.rotations[i1].reshape(-1, 3, 3)
    rots = _slerp(R0, R1, np.repeat(w, J)).reshape(n, J, 3, 3)
    return dataclasses.replace(clip, rotations=rots, translations=trans, fps=float(fps))


# ----------------------------------------------------------------------------- skeleton helpers


def canonical_skeleton(skeleton: Skeleton) -> Skeleton:
    """``skeleton`` without root placeholders: while joint 0 has exactly one child, drop it and
    make the child the root (module docstring)."""
    while len(skeleton.children(0)) == 1 and skeleton.n_joints > 1:
        parents = np.asarray(skeleton.parents)[1:] - 1
        parents[0] = -1
        skeleton = Skeleton(tuple(skeleton.names[1:]), parents, np.asarray(skeleton.offsets)[1:])
    return skeleton


def canonicalize(clip: Clip) -> Clip:
    """``clip`` on :func:`canonical_skeleton`: a single-child root is folded into its child
    (``R'_c = R_0 R_c``, ``p'_c = p_0 + R_0 p_c``).  Positions of all remaining joints are
    unchanged.  Returns ``clip`` itself when there is nothing to fold."""
    while len(clip.skeleton.children(0)) == 1 and clip.skeleton.n_joints > 1:
        c = clip.skeleton.children(0)[0]
        assert c == 1, "parents precede children, so the only child of the root is joint 1"
        R0, p0 = clip.rotations[:, 0], clip.translations[:, 0]
        rots = clip.rotations[:, 1:].copy()
        trans = clip.translations[:, 1:].copy()
        rots[:, 0] = R0 @ clip.rotations[:, 1]
        trans[:, 0] = p0 + np.einsum("tab,tb->ta", R0, clip.translations[:, 1])
        old = clip.skeleton
        parents = np.asarray(old.parents)[1:] - 1
        parents[0] = -1
        skel = Skeleton(tuple(old.names[1:]), parents, np.asarray(old.offsets)[1:])
        clip = dataclasses.replace(clip, skeleton=skel, rotations=rots, translations=trans)
    return clip


def _is_left(name: str) -> bool | None:
    """Side from a joint name: 'left'/'right', a ``_L``/``_R`` (or ``.L``) suffix, an ``L_``/``R_``
    prefix or a CamelCase ``L``/``R`` initial (CMU ``LHipJoint``); None when it does not say."""
    n = name.lower()
    for word, side in (("left", True), ("right", False)):
        if word in n:
            return side
    for c, side in (("l", True), ("r", False)):
        if n.endswith(("_" + c, "." + c)) or n.startswith(c + "_") or (
                name[:1] == c.upper() and name[1:2].isupper()):
            return side
    return None


def body_frame(skeleton: Skeleton) -> np.ndarray:
    """(3, 3) rotation ``B`` whose columns are the body's forward, left and up axes in the
    (canonical) root's local frame, from rest offsets.

    The root's two children with the most similar bone lengths are the hips (``a``, ``b``); the
    remaining child with the longest bone is the spine (``up``; without one, ``up = -(o_a + o_b)/2``).
    ``left = o_left - o_right`` (left/right by name, else joint order), ``forward = left x up``,
    then Gram-Schmidt (forward, up) and ``left = up x forward``.  Fallback (fewer than two
    children): ``up`` = mean child direction, forward = the local axis most orthogonal to it.
    DeepMimic's humanoid3d gives ``B = I`` (x forward, y left, z up)."""
    skeleton = canonical_skeleton(skeleton)
    kids = skeleton.children(0)
    off = np.asarray(skeleton.offsets, dtype=float)
    fwd = up = None
    if len(kids) >= 2:
        lengths = np.linalg.norm(off[kids], axis=1)
        pairs = [(abs(lengths[i] - lengths[k]) / max(lengths[i], lengths[k], 1e-12), i, k)
                 for i in range(len(kids)) for k in range(i + 1, len(kids))]
        _, i, k = min(pairs)
        a, b = kids[i], kids[k]
        rest = [c for c in kids if c not in (a, b)]
        up = off[max(rest, key=lambda c: np.linalg.norm(off[c]))] if rest else -(off[a] + off[b]) / 2
        left_a = _is_left(skeleton.names[a])
        if left_a is False or (left_a is None and _is_left(skeleton.names[b]) is True):
            a, b = b, a
        fwd = np.cross(off[a] - off[b], up)
    if fwd is None or np.linalg.norm(fwd) < 1e-9 or np.linalg.norm(up) < 1e-9:
        up = off[kids].mean(axis=0) if kids else np.array([0.0, 0.0, 1.0])
        if np.linalg.norm(up) < 1e-9:
            up = np.array([0.0, 0.0, 1.0])
        fwd = np.eye(3)[int(np.argmin(np.abs(up) / np.linalg.norm(up)))]
    up = up / np.linalg.norm(up)
    fwd = fwd - (fwd @ up) * up
    fwd = fwd / np.linalg.norm(fwd)
    return np.stack([fwd, np.cross(up, fwd), up], axis=1)


def heading_axis(skeleton: Skeleton) -> np.ndarray:
    """Unit forward axis (3,) in the root's local frame: the first column of :func:`body_frame`."""
    return body_frame(skeleton)[:, 0]


def heading(root_world_rot: np.ndarray, skeleton: Skeleton) -> np.ndarray:
    """Yaw (T,) in [-pi, pi) of root world rotations (T, 3, 3): the twist about +Z of the body
    rotation ``G_root B`` (:func:`body_frame`), ``yaw = 2 atan2(q_z, q_w)`` for its quaternion.
    Equivariant (``Rz(a) G`` has yaw + a) and, unlike projecting the forward axis on the
    ground, well defined when the pelvis is pitched 90 degrees (lying on the back, deep bows);
    singular only for the body exactly upside down."""
    from scipy.spatial.transform import Rotation

    q = Rotation.from_matrix(np.asarray(root_world_rot) @ body_frame(skeleton)).as_quat()  # x y z w
    return _wrap(2.0 * np.arctan2(q[:, 2], q[:, 3]))


# ----------------------------------------------------------------------------- features


def layout(n_joints: int, n_feet: int) -> dict[str, slice]:
    """Slices of the feature vector (module docstring) for ``n_joints`` joints and ``n_feet``
    contact channels."""
    J = n_joints
    sizes = [("root_height", 1), ("root_velocity", 2), ("yaw_rate", 1), ("rotations", 6 * J),
             ("positions", 3 * J), ("contacts", n_feet)]
    out, start = {}, 0
    for name, n in sizes:
        out[name] = slice(start, start + n)
        start += n
    return out


def feature_layout(skeleton: Skeleton) -> dict[str, slice]:
    """Slices of the feature vector (module docstring) for ``skeleton`` (original or canonical)."""
    skel = canonical_skeleton(skeleton)
    return layout(skel.n_joints, len(skel.foot_joints()))


def standardisation(x: np.ndarray, groups: Sequence[slice] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Mean (F,) and std (F,) of windows ``x`` (n, T, F) for the encoder's input.

    With ``groups`` (slices of the feature vector, e.g. the representation's root height / root
    velocity / yaw rate / rotations / positions / contacts), every feature of a group is divided
    by the *mean* std of the group -- the HumanML3D / MDM feature normalisation.  Features outside
    every group, and all features when ``groups`` is None, keep their own std floored at 1 % of
    the mean std.  Why not the per-feature std: joints that are exact hinges in the data (Bandai's
    knees, shoulders, nearly its elbows) have 6-D rotation entries with std 0 -- 0.0004; divided
    by that, a deviation of 1e-3 rad, far below anything visible, became hundreds of standard
    deviations and dominated FID, and the MDM learned their invisible wobble as its largest
    signal (docs/motion.md, "Motion encoder" and "Standardisation").  Floor 1e-6 on
    every std."""
    flat = np.asarray(x, dtype=np.float64).reshape(-1, x.shape[-1])
    mean, sd = flat.mean(axis=0), flat.std(axis=0)
    std = np.maximum(sd, 0.01 * sd.mean())
    for g in groups or ():
        std[g] = sd[g].mean()
    return mean.astype(np.float32), np.maximum(std, 1e-6).astype(np.float32)


def n_features(skeleton: Skeleton) -> int:
    return feature_layout(skeleton)["contacts"].stop


def foot_contacts(positions: np.ndarray, feet: list[int], fps: float, *,
                  height: float = CONTACT_HEIGHT, speed: float = CONTACT_SPEED) -> np.ndarray:
    """(T, n_feet) float 0/1: ``z_j(t) - min_t z_j < height`` and horizontal speed ``< speed``.

    Heights are relative to each foot joint's lowest point in the clip, so a joint that sits
    above the floor at contact (Bandai's toes ~4 cm, ankles ~12 cm) is handled; the assumption
    is that each foot touches the ground somewhere in the clip.  Speed: central differences
    (one-sided at the ends) of the planar position, m/s."""
    P = np.asarray(positions, dtype=float)[:, feet]
    if len(P) == 0 or not feet:
        return np.zeros((len(P), len(feet)))
    low = P[..., 2] - P[..., 2].min(axis=0, keepdims=True) < height
    if len(P) > 1:
        v = np.gradient(P[..., :2], axis=0) * fps
        slow = np.linalg.norm(v, axis=-1) < speed
    else:
        slow = np.ones_like(low)
    return (low & slow).astype(float)


def encode(clip: Clip, *, fps: float = 30.0) -> np.ndarray:
    """Features ``(T', F)`` float32 of ``clip`` (module docstring): canonicalised, resampled to
    ``fps`` (:func:`resample`), then per frame root height, heading-frame planar velocity, yaw
    rate, 6-D local rotations, heading-frame root-relative positions and foot contacts.

    Raises ValueError when a non-root joint's local translation is animated (differs from its bone
    offset by more than TRANSLATION_TOL): the representation stores rotations only."""
    clip = canonicalize(clip)
    skel = clip.skeleton
    dev = np.abs(clip.translations[:, 1:] - np.asarray(skel.offsets)[None, 1:]).max(axis=(0, 2)) \
        if skel.n_joints > 1 else np.zeros(0)
    if dev.size and dev.max() > TRANSLATION_TOL:
        j = int(np.argmax(dev)) + 1
        raise ValueError(f"encode: clip {clip.name!r}: joint {skel.names[j]!r} has an animated translation "
                         f"(up to {dev.max():.4g} m from its bone offset); the representation stores "
                         f"rotations only, so every non-root translation must equal the bone offset "
                         f"(tolerance {TRANSLATION_TOL} m)")
    clip = resample(clip, fps)
    X, G = fk(skel.parents, clip.rotations, clip.translations)
    T, J = X.shape[:2]
    yaw = heading(G[:, 0], skel)
    Hinv = rot_z(-yaw)  # (T, 3, 3) world -> heading frame
    root = X[:, 0]
    lay = feature_layout(skel)
    out = np.zeros((T, n_features(skel)))
    out[:, lay["root_height"]] = root[:, 2:3]
    if T > 1:
        d = np.diff(root, axis=0) * fps
        vel = np.einsum("tab,tb->ta", Hinv[:-1], d)[:, :2]
        rate = _wrap(np.diff(yaw)) * fps
        out[:-1, lay["root_velocity"]] = vel
        out[-1, lay["root_velocity"]] = vel[-1]
        out[:-1, lay["yaw_rate"]] = rate[:, None]
        out[-1, lay["yaw_rate"]] = rate[-1]
    R = clip.rotations.copy()
    R[:, 0] = Hinv @ G[:, 0]
    out[:, lay["rotations"]] = rotation_to_6d(R).reshape(T, 6 * J)
    rel = np.einsum("tab,tjb->tja", Hinv, X - root[:, None])
    out[:, lay["positions"]] = rel.reshape(T, 3 * J)
    out[:, lay["contacts"]] = foot_contacts(X, skel.foot_joints(), fps)
    return out.astype(np.float32)


def decode(features: np.ndarray, skeleton: Skeleton, *, fps: float, name: str = "decoded") -> Clip:
    """The :class:`Clip` (on :func:`canonical_skeleton`) that ``features`` (T, F) describe.

    Starts at the origin with heading 0: ``yaw_0 = 0``, ``yaw_{t+1} = yaw_t + rate_t / fps``;
    ``p_0.xy = 0``, ``p_{t+1}.xy = p_t.xy + Rz(yaw_t) v_t / fps``; ``p_t.z`` = root height; root
    rotation ``Rz(yaw_t) R6(root)``, other joints ``R6(j)`` (:func:`rotation_from_6d`);
    non-root translations = bone offsets."""
    skel = canonical_skeleton(skeleton)
    f = np.asarray(features, dtype=float)
    lay = feature_layout(skel)
    F = n_features(skel)
    if f.ndim != 2 or f.shape[1] != F:
        raise ValueError(f"decode: features shape {f.shape}; a {skel.n_joints}-joint skeleton with "
                         f"{len(skel.foot_joints())} feet needs (T, {F})")
    if not np.isfinite(f).all():
        raise ValueError("decode: features contain NaN or infinite values")
    T, J = len(f), skel.n_joints
    yaw = np.zeros(T)
    yaw[1:] = np.cumsum(f[:-1, lay["yaw_rate"]][:, 0]) / fps
    H = rot_z(yaw)
    step = np.zeros((T, 3))
    step[1:, :2] = f[:-1, lay["root_velocity"]] / fps
    step[1:] = np.einsum("tab,tb->ta", H[:-1], step[1:])
    root = np.cumsum(step, axis=0)
    root[:, 2] = f[:, lay["root_height"]][:, 0]
    R = rotation_from_6d(f[:, lay["rotations"]].reshape(T, J, 6))
    R[:, 0] = H @ R[:, 0]
    trans = np.broadcast_to(np.asarray(skel.offsets, dtype=float), (T, J, 3)).copy()
    trans[:, 0] = root
    return Clip(skel, R, trans, float(fps), name=name)


def windows(features: np.ndarray, length: int, stride: int) -> np.ndarray:
    """``(n, length, F)`` copies of ``features[s : s + length]`` for ``s = 0, stride, ...`` with
    ``n = (T - length) // stride + 1`` (0 when ``T < length``).  Every window is itself a valid
    feature sequence (all quantities are local), decodable from the origin."""
    f = np.asarray(features)
    if length < 1 or stride < 1:
        raise ValueError(f"windows: length {length} and stride {stride} must be >= 1")
    T = len(f)
    if T < length:
        return np.zeros((0, length) + f.shape[1:], dtype=f.dtype)
    starts = np.arange(0, T - length + 1, stride)
    return np.stack([f[s: s + length] for s in starts])
