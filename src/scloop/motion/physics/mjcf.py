"""MJCF humanoid generated from a :class:`~scloop.motion.skeleton.Skeleton`.

Kinematic tree = the skeleton's tree: one MuJoCo body per joint, placed at the joint's rest offset,
so body frames coincide with the skeleton's joint frames (the skeleton's rest frames are the
identity).  Leading zero-length single-child root joints (Bandai ``joint_Root``) are *merged*: they
get no body; the first other joint is the *pelvis* and carries a free joint.  Every other joint
gets three hinges about its local z, x, y axes (in that order; MuJoCo composes a body's joints
intrinsically, so the hinge angles ``(a, b, c)`` give ``R_local = Q Rz(a) Rx(b) Ry(c)``), where
``Q`` is the joint's *neutral* rotation, written into the body ``quat``.  The neutral moves the
Euler singularity (middle angle +-90 deg) away from the poses actually used: Bandai's Maya-style
local frames put e.g. the spine at ~90 deg about x, exactly on the singularity of an identity
neutral (a pitfall of the feasibility probe).

Geometry: one capsule per bone (joint -> child), capsules / spheres extending the leaf joints
(head, hands), a foot box from 5 cm behind the ankle to the ball (toe joint) whose sole lies
``toe_height`` below the toe joint (4.2 cm measured at Bandai contacts + ~2 mm soft-contact sink), and a toe capsule lifted ``toe_lift`` above that sole (a toe
geom at sole level digs into the floor when the cleaned mocap flexes the toes; probe pitfall 6).
Masses are proportional to geom volume, scaled so the total is ``mass_kg``.  Body geoms collide
with the floor only (contype 2 / conaffinity 1 versus the floor's 1 / 1).

Odd shapes (BVH files as distributed: CMU's zero-length hip and lower-back bones, fingers, twist
joints; skeletons of 15-70 joints):

- a zero-length bone gets no capsule; a body left without any geom (all its bones zero-length,
  e.g. a joint whose only child is a twist joint at the same point) gets a small inertial
  (``NO_GEOM_MASS``) so that its hinges have something to move;
- the pelvis girdle joins the first joints of the two legs that lie >= 1 cm from the pelvis
  (through zero-length hip joints), none if they are closer than 1 cm;
- a leaf joint is extended along the last bone of non-zero length above it, by at most 8 cm and
  at most that bone's length (fingertips stay finger-sized);
- a foot joint with no toe joint below it (DeepMimic's ankles, a body without toes) gets a foot
  box whose sole lies ``ankle_height`` below the ankle, pointing along ``foot_forward`` (the
  tracker passes the clip's walking direction; fallback: the skeleton's forward axis at the
  neutral pose), from ``heel_back`` behind to ``toe_front`` in front of the ankle;
- joint names are sanitised and made unique, also against MuJoCo's ``world`` and the mocap
  bodies ``ref_pos`` / ``ref_rot``;
- a joint that does not move in the clip (0 rotation channels in a BVH file) has all three hinges
  locked by the tracker: its body is welded to its parent.

A body outside the human range (:func:`scloop.motion.skeleton.body_height` outside
``PLAUSIBLE_BODY_HEIGHT_M``: wrong units), a joint hanging off a merged root, or a model that
MuJoCo rejects anyway raises :class:`PhysicsModelError` (a :class:`SkeletonError`, so a
``ValueError``) naming the skeleton's joint and what is allowed, never MuJoCo's own message alone.

Actuators: one position actuator per hinge with
``kp = max(stiffness * m_load * g * lever, (2 pi f_pd)^2 M_jj, kp_min)`` where ``m_load`` is the
mass the joint supports (whole body for the leg joints, i.e. joints between pelvis and a foot
joint, with ``lever = leg_lever`` or the toe length for toe joints; the distal subtree with its
COM distance as lever otherwise) -- inertia-only gains left the stance ankle too weak (pitfall 7);
``kv = max(2 sqrt(kp M_jj), 0.05 kp)``; force limit ``max(3 m_load g lever, 0.3 kp, 20)`` N m.
``M_jj`` is the joint-space inertia diagonal at the neutral pose (armature included).
Six harness actuators (position, site ``root`` on the pelvis against mocap ref-sites ``ref_pos``
(world-aligned, translation) and ``ref_rot`` (reference orientation)) at ``harness_hz`` critical
damping for a point mass ``mass_kg`` / inertia ``harness_inertia``; their force ranges are set by
:func:`scloop.motion.physics.tracking.track` (0 = off).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from scloop.motion.skeleton import PLAUSIBLE_BODY_HEIGHT_M, Skeleton, SkeletonError, body_height

G = 9.81
HINGE_AXES = (("z", (0.0, 0.0, 1.0)), ("x", (1.0, 0.0, 0.0)), ("y", (0.0, 1.0, 0.0)))
EULER_ORDER = "ZXY"  # scipy intrinsic; matches the hinge order above
HARNESS = ("harness_x", "harness_y", "harness_z", "harness_rx", "harness_ry", "harness_rz")
RESERVED_NAMES = ("world", "ref_pos", "ref_rot")  # MuJoCo's world body and the harness' mocap bodies
NO_GEOM_MASS = 0.05  # kg, inertial of a body whose bones all have zero length
MIN_BONE = 1e-3  # m: shorter bones get no capsule


class PhysicsModelError(SkeletonError):
    """A skeleton the physics correction cannot build a humanoid for (the message says why)."""

# capsule radius (m) by name keyword, first match wins; default 0.04
_RADII = (("head", 0.09), ("neck", 0.05), ("chest", 0.11), ("spine", 0.10), ("hips", 0.10), ("pelvis", 0.10),
          ("shoulder", 0.05), ("clavicle", 0.05), ("upperarm", 0.045), ("lowerarm", 0.038), ("forearm", 0.038),
          ("hand", 0.035), ("upperleg", 0.075), ("thigh", 0.075), ("lowerleg", 0.055), ("shin", 0.055),
          ("leg", 0.06), ("arm", 0.04))


@dataclass(frozen=True)
class Layout:
    """How skeleton joints map to the model: ``merged`` (root joints without a body), ``pelvis``
    (free joint), ``hinged`` (three hinges each, names ``f"{body}_{axis}"``), ``body`` names
    (sanitised joint names, ``""`` for merged joints), ``ankles`` / ``toes`` (contact joints:
    the topmost foot joints with a toe joint >= 1 cm below them, and those toes), ``flat`` (the
    topmost foot joints without one: a foot box under the ankle)."""

    merged: tuple[int, ...]
    pelvis: int
    hinged: tuple[int, ...]
    body: tuple[str, ...]
    ankles: tuple[int, ...]
    toes: tuple[int, ...]
    flat: tuple[int, ...] = ()


def layout(skeleton: Skeleton) -> Layout:
    """Merged roots: the leading chain of joints with a zero offset and exactly one child."""
    parents = np.asarray(skeleton.parents)
    offsets = np.asarray(skeleton.offsets, dtype=float)
    merged: list[int] = []
    j = 0
    while len(skeleton.children(j)) == 1 and np.linalg.norm(offsets[j]) < 1e-9:
        merged.append(j)
        j = skeleton.children(j)[0]
    pelvis = j
    hinged = tuple(k for k in range(skeleton.n_joints) if k not in merged and k != pelvis)
    for k in hinged:
        if parents[k] in merged:
            raise PhysicsModelError(
                f"skeleton: joint {skeleton.names[k]!r} hangs off the zero-length root joint "
                f"{skeleton.names[int(parents[k])]!r}, which is folded into {skeleton.names[pelvis]!r}; allowed: "
                "zero-length root joints with exactly one child each (e.g. a static 'joint_Root' above the hips)")
    body = []
    used: set[str] = set(RESERVED_NAMES)
    for k, n in enumerate(skeleton.names):
        if k in merged:
            body.append("")
            continue
        s = "".join(ch if ch.isalnum() or ch in "_-." else "_" for ch in n) or f"j{k}"
        while s in used:
            s += "_"
        used.add(s)
        body.append(s)
    foot = set(skeleton.foot_joints())
    top = [k for k in sorted(foot) if k not in merged and not _has_ancestor_in(parents, k, foot)]
    toe_kids = {k: [c for c in skeleton.children(k) if c in foot and np.linalg.norm(offsets[c]) >= 0.01]
                for k in top}
    ankles = tuple(k for k in top if toe_kids[k])
    toes = tuple(toe_kids[k][0] for k in ankles)
    flat = tuple(k for k in top if not toe_kids[k] and k != pelvis)
    return Layout(tuple(merged), pelvis, hinged, tuple(body), ankles, toes, flat)


def _has_ancestor_in(parents: np.ndarray, k: int, group: set[int]) -> bool:
    k = int(parents[k])
    while k >= 0:
        if k in group:
            return True
        k = int(parents[k])
    return False


def _radius(name: str) -> float:
    low = name.lower().replace("_", "").replace("-", "")
    for key, r in _RADII:
        if key in low:
            return r
    return 0.04


def _quat(R: np.ndarray) -> np.ndarray:
    """3x3 rotation -> unit quaternion (w, x, y, z), w >= 0 (Shepperd's method; scipy's
    Rotation costs ~0.1 ms a call, and the MJCF has ~40 of them)."""
    R = np.asarray(R, dtype=float)
    tr = R[0, 0] + R[1, 1] + R[2, 2]
    k = int(np.argmax([tr, R[0, 0], R[1, 1], R[2, 2]]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + tr)
        q = np.array([0.25 * s, (R[2, 1] - R[1, 2]) / s, (R[0, 2] - R[2, 0]) / s, (R[1, 0] - R[0, 1]) / s])
    else:
        i, j, l = (k - 1, k % 3, (k + 1) % 3)
        s = 2.0 * np.sqrt(1.0 + R[i, i] - R[j, j] - R[l, l])
        q = np.zeros(4)
        q[0] = (R[l, j] - R[j, l]) / s
        q[1 + i] = 0.25 * s
        q[1 + j] = (R[j, i] + R[i, j]) / s
        q[1 + l] = (R[l, i] + R[i, l]) / s
    q /= np.linalg.norm(q)
    return q if q[0] >= 0 else -q


def _f(v) -> str:
    return " ".join(f"{float(x):.6g}" for x in np.ravel(v))


def _default_down(skeleton: Skeleton, ankle: int, toe: int) -> np.ndarray:
    """Fallback sole normal (pointing down, ankle frame): the unit vector orthogonal to the foot
    bone closest to the local -z axis."""
    u = np.asarray(skeleton.offsets[toe], float)
    u = u / np.linalg.norm(u)
    d = np.array([0.0, 0.0, -1.0]) - np.dot([0.0, 0.0, -1.0], u) * u
    if np.linalg.norm(d) < 1e-6:
        d = np.cross(u, [0.0, 1.0, 0.0])
    return d / np.linalg.norm(d)


def _neutral_frames(skeleton: Skeleton, lay: Layout, Q: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (J, 3, 3) and positions (J, 3) of every body frame in the pelvis frame at the
    neutral pose (merged joints: the pelvis frame)."""
    J = skeleton.n_joints
    parents = np.asarray(skeleton.parents)
    offsets = np.asarray(skeleton.offsets, dtype=float)
    Gn = np.broadcast_to(np.eye(3), (J, 3, 3)).copy()
    Pn = np.zeros((J, 3))
    for k in range(J):
        p = int(parents[k])
        if k in lay.merged or k == lay.pelvis or p < 0:
            continue
        Pn[k] = Pn[p] + Gn[p] @ offsets[k]
        Gn[k] = Gn[p] @ Q[k]
    return Gn, Pn


def _incoming(skeleton: Skeleton, k: int, Gn: np.ndarray, Q: np.ndarray) -> tuple[np.ndarray, float] | None:
    """The last bone of non-zero length ending at joint ``k`` (through zero-length bones), as a
    direction in ``k``'s body frame, and its length; None if every bone above is zero-length."""
    offsets = np.asarray(skeleton.offsets, dtype=float)
    parents = np.asarray(skeleton.parents)
    L = float(np.linalg.norm(offsets[k]))
    if L >= MIN_BONE:
        d = Q[k].T @ offsets[k]  # the bone in k's frame (k's parent frame rotated by Q_k)
        return d / max(np.linalg.norm(d), 1e-9), L
    j = k
    while int(parents[j]) >= 0:
        L = float(np.linalg.norm(offsets[j]))
        if L >= MIN_BONE:
            return Gn[k].T @ (Gn[int(parents[j])] @ offsets[j]) / L, L
        j = int(parents[j])
    return None


def _compile(xml: str, skeleton: Skeleton, lay: Layout):
    """``mujoco.MjModel`` of ``xml``; a model MuJoCo rejects raises PhysicsModelError naming the
    skeleton joint of the element it names."""
    import re

    import mujoco

    try:
        return mujoco.MjModel.from_xml_string(xml)
    except ValueError as exc:
        msg = str(exc).strip().replace("\n", "; ")
        m = re.search(r"Element name '([^']*)'", str(exc))
        joint = ""
        if m:
            el = m.group(1)
            for k, b in enumerate(lay.body):
                if b and (el == b or el.startswith(f"g_{b}_") or el.startswith(f"{b}_") or el.startswith(f"a_{b}_")):
                    joint = f" at joint {skeleton.names[k]!r}"
                    break
        raise PhysicsModelError(
            f"physics: the humanoid built for this {skeleton.n_joints}-joint skeleton cannot be simulated{joint} "
            f"(MuJoCo: {msg}); allowed: bones of >= {MIN_BONE:g} m or exactly 0, a human-sized body "
            f"({PLAUSIBLE_BODY_HEIGHT_M[0]:g}-{PLAUSIBLE_BODY_HEIGHT_M[1]:g} m head to ankle)") from None


def build_mjcf(skeleton: Skeleton, *, mass_kg: float = 65.0, neutral: np.ndarray | None = None,
               foot_down: dict[int, np.ndarray] | None = None, foot_forward: dict[int, np.ndarray] | None = None,
               ranges: np.ndarray | None = None, locked: np.ndarray | None = None,
               timestep: float = 1.0 / 300.0, friction: float = 1.0, toe_height: float = 0.044,
               toe_lift: float = 0.012, heel_back: float = 0.05, foot_width: float = 0.09,
               ankle_height: float = 0.07, toe_front: float = 0.15,
               armature: float = 0.02, damping: float = 0.5, stiffness: float = 10.0, leg_lever: float = 0.2,
               f_pd: float = 7.0, kp_min: float = 30.0, harness_hz: float = 5.0,
               harness_inertia: float = 8.0, cone: str = "pyramidal", impratio: float = 1.0,
               solref: tuple[float, float] = (0.015, 1.0), compiled: bool = False):
    """MJCF text for ``skeleton`` (module docstring); with ``compiled=True`` the compiled
    ``mujoco.MjModel`` instead, built with one compile (the text path compiles a draft for the
    gains, and its user compiles the text again): the same model, array for array.

    ``neutral`` (J, 3, 3): per-joint neutral local rotation (identity if None).  ``foot_down``:
    ankle joint index -> unit sole normal pointing down, in the ankle's frame (fallback: the
    direction orthogonal to the foot bone closest to local -z; for a foot without toes, world
    down at the neutral pose).  ``foot_forward``: for a foot without toes, ankle joint index ->
    the foot's forward direction in the ankle frame (fallback: the skeleton's forward axis at the
    neutral pose); its box reaches ``heel_back`` behind and ``toe_front`` in front of the ankle,
    its sole ``ankle_height`` below it.  ``ranges`` (J, 3, 2) hinge limits
    in radians relative to the neutral (default +-2.5 rad).  ``locked`` (J, 3) bool: hinge axes
    left out (fixed at the neutral; e.g. the knee's x/y axes, which barely move -- every hinge
    costs stepping time).  ``solref`` (time constant s, damping ratio): every body geom's contact
    softness (default 0.015 s, a little stiffer than MuJoCo's 0.02; with ``f_pd`` 7 Hz, ``stiffness``
    10 and the tracker's ``velocity_ff`` 0.85 the setting that keeps clean clips' foot skating
    within 20 % of the input's, docs/motion.md).  Units:
    kg, m, s, rad.
    """
    import mujoco

    sr = np.asarray(solref, dtype=float).ravel()
    if sr.shape != (2,) or not (np.isfinite(sr).all() and (sr > 0).all()):
        raise ValueError(f"build_mjcf: solref={solref!r}; expected (time constant > 0 s, damping ratio > 0)")

    if not np.isfinite(mass_kg) or mass_kg <= 0:
        raise ValueError(f"build_mjcf: mass_kg={mass_kg!r}; must be a positive number")
    if not (1e-4 <= timestep <= 0.02):
        raise ValueError(f"build_mjcf: timestep={timestep!r}; allowed 1e-4 .. 0.02 s")
    J = skeleton.n_joints
    h = body_height(skeleton)
    lo, hi = PLAUSIBLE_BODY_HEIGHT_M
    if h is not None and not lo <= h <= hi:
        raise PhysicsModelError(f"physics: the skeleton measures {h:.3g} m from head to ankle along the bones; the "
                                f"humanoid is a {mass_kg:g} kg person, allowed: {lo:g}-{hi:g} m (~0.8 x standing "
                                "height) -- are the units right? (read_bvh(..., scale=...))")
    lay = layout(skeleton)
    offsets = np.asarray(skeleton.offsets, dtype=float)
    parents = np.asarray(skeleton.parents)
    Q = np.broadcast_to(np.eye(3), (J, 3, 3)).copy() if neutral is None else np.asarray(neutral, float)
    if Q.shape != (J, 3, 3):
        raise ValueError(f"build_mjcf: neutral has shape {Q.shape}; expected ({J}, 3, 3)")
    Gn, Pn = _neutral_frames(skeleton, lay, Q)
    rng_ = np.tile([-2.5, 2.5], (J, 3, 1)) if ranges is None else np.asarray(ranges, float)
    if rng_.shape != (J, 3, 2):
        raise ValueError(f"build_mjcf: ranges has shape {rng_.shape}; expected ({J}, 3, 2)")
    foot_down = dict(foot_down or {})
    lock = np.zeros((J, 3), bool) if locked is None else np.asarray(locked, bool)
    if lock.shape != (J, 3):
        raise ValueError(f"build_mjcf: locked has shape {lock.shape}; expected ({J}, 3)")

    # ---- geoms per body: (xml without mass, volume)
    geoms: dict[int, list[tuple[str, float]]] = {k: [] for k in range(J) if k not in lay.merged}
    toe_of = {int(parents[t]): t for t in lay.toes}
    for k in geoms:
        r = _radius(skeleton.names[k])
        kids = [c for c in skeleton.children(k)]
        for c in kids:
            if k in lay.ankles and c == toe_of.get(k):
                continue  # the foot box replaces the ankle->toe capsule
            L = float(np.linalg.norm(offsets[c]))
            if L < MIN_BONE:
                continue
            rc = min(r, 0.45 * L) if k != lay.pelvis else min(r, 0.6 * L)
            geoms[k].append((f'type="capsule" fromto="0 0 0 {_f(offsets[c])}" size="{rc:.4g}"',
                             np.pi * rc**2 * L + 4 / 3 * np.pi * rc**3))
        if k == lay.pelvis:
            feet = set(lay.ankles) | set(lay.flat)
            legs = [c for c in kids if any(a in feet for a in _descendants(skeleton, c))]
            hips = [_hip_point(skeleton, c, feet, Pn) for c in legs] if len(legs) == 2 else []
            if len(hips) == 2 and hips[0] is not None and hips[1] is not None \
                    and np.linalg.norm(hips[0] - hips[1]) >= 0.01:  # pelvis girdle between the hip joints
                rc = 0.09
                L = float(np.linalg.norm(hips[0] - hips[1]))
                geoms[k].append((f'type="capsule" fromto="{_f(hips[0])} {_f(hips[1])}" '
                                 f'size="{rc}"', np.pi * rc**2 * L + 4 / 3 * np.pi * rc**3))
        inc = _incoming(skeleton, k, Gn, Q) if not kids and k != lay.pelvis else None
        if inc is not None and k not in lay.toes and k not in lay.flat:
            # leaf (head, hand): extend along the incoming bone direction, seen in this body's frame
            d, L_in = inc
            if "head" in skeleton.names[k].lower():
                rc = 0.09
                geoms[k].append((f'type="sphere" pos="{_f(0.08 * d)}" size="{rc}"', 4 / 3 * np.pi * rc**3))
            else:
                L = min(0.08, L_in)
                rc = min(0.035, 0.45 * L)
                geoms[k].append((f'type="capsule" fromto="0 0 0 {_f(L * d)}" size="{rc:.4g}"',
                                 np.pi * rc**2 * L + 4 / 3 * np.pi * rc**3))
    for a in lay.ankles:
        t = toe_of.get(a)
        if t is None:
            continue
        u = offsets[t]
        d = np.asarray(foot_down.get(a, _default_down(skeleton, a, t)), float)
        d = d / np.linalg.norm(d)
        fwd = u - np.dot(u, d) * d
        fwd /= np.linalg.norm(fwd)
        lat = np.cross(-d, fwd)
        sole = float(np.dot(u, d)) + toe_height  # depth of the sole plane below the ankle along d
        x0, x1 = -heel_back, float(np.dot(u, fwd))
        h = 0.07
        centre = 0.5 * (x0 + x1) * fwd + (sole - h / 2) * d
        Rbox = np.stack([fwd, lat, -d], axis=1)
        geoms[a].append((f'type="box" pos="{_f(centre)}" quat="{_f(_quat(Rbox))}" '
                         f'size="{(x1 - x0) / 2:.4g} {foot_width / 2:.4g} {h / 2:.4g}"', (x1 - x0) * foot_width * h))
        # toe capsule: in the toe frame at its neutral rotation (foot-frame vector v -> Q_t^T v)
        rt, Lt = 0.02, 0.045
        base = (toe_height - rt - toe_lift) * d  # from the toe joint down towards the (lifted) sole
        p0, p1 = Q[t].T @ base, Q[t].T @ (base + Lt * fwd)
        geoms[t].append((f'type="capsule" fromto="{_f(p0)} {_f(p1)}" size="{rt}"',
                         np.pi * rt**2 * Lt + 4 / 3 * np.pi * rt**3))
    body_fwd = _body_forward(skeleton) if lay.flat else None
    for a in lay.flat:  # a foot without toes: a box under the ankle
        d = foot_down.get(a)
        d = Gn[a].T @ np.array([0.0, 0.0, -1.0]) if d is None else np.asarray(d, float)
        d = d / np.linalg.norm(d)
        fwd = (foot_forward or {}).get(a)
        fwd = Gn[a].T @ body_fwd if fwd is None else np.asarray(fwd, float)
        fwd = fwd - np.dot(fwd, d) * d
        if np.linalg.norm(fwd) < 1e-6:
            fwd = np.cross(d, [1.0, 0.0, 0.0]) if abs(d[0]) < 0.9 else np.cross(d, [0.0, 1.0, 0.0])
        fwd /= np.linalg.norm(fwd)
        lat = np.cross(-d, fwd)
        h = 0.07
        centre = 0.5 * (toe_front - heel_back) * fwd + (ankle_height - h / 2) * d
        Rbox = np.stack([fwd, lat, -d], axis=1)
        geoms[a].append((f'type="box" pos="{_f(centre)}" quat="{_f(_quat(Rbox))}" '
                         f'size="{(toe_front + heel_back) / 2:.4g} {foot_width / 2:.4g} {h / 2:.4g}"',
                         (toe_front + heel_back) * foot_width * h))
    vol = sum(v for gl in geoms.values() for _, v in gl)
    if vol <= 0:
        raise PhysicsModelError(f"physics: the skeleton ({', '.join(skeleton.names)}) has no bone of >= "
                                f"{MIN_BONE:g} m; allowed: a body with bones")
    dens = mass_kg / vol

    def xml(gains: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] | None) -> str:
        out = ['<mujoco model="scloop_humanoid">',
               '<compiler angle="radian" autolimits="true"/>',
               f'<option timestep="{timestep:.8g}" integrator="implicitfast" cone="{cone}" impratio="{impratio:g}"/>',
               "<default>",
               f'<joint type="hinge" armature="{armature}" damping="{damping}"/>',
               f'<geom contype="2" conaffinity="1" condim="3" friction="{friction} 0.005 0.0001" '
               f'solref="{solref[0]:g} {solref[1]:g}"/>',
               "</default>", "<worldbody>",
               f'<geom name="floor" type="plane" size="0 0 0.05" contype="1" conaffinity="1" '
               f'friction="{friction} 0.005 0.0001"/>',
               '<body name="ref_pos" mocap="true"><site name="ref_pos" size="0.01"/></body>',
               '<body name="ref_rot" mocap="true"><site name="ref_rot" size="0.01"/></body>']

        def emit(k: int, indent: str) -> None:
            pos = np.zeros(3) if k == lay.pelvis else offsets[k]
            quat = "" if k == lay.pelvis else f' quat="{_f(_quat(Q[k]))}"'
            out.append(f'{indent}<body name="{lay.body[k]}" pos="{_f(pos)}"{quat}>')
            if k == lay.pelvis:
                out.append(f'{indent} <freejoint name="root"/><site name="root" size="0.01"/>')
            else:
                for ax, (nm, vec) in enumerate(HINGE_AXES):
                    if lock[k, ax]:
                        continue
                    lo, hi = rng_[k, ax]
                    out.append(f'{indent} <joint name="{lay.body[k]}_{nm}" axis="{_f(vec)}" '
                               f'range="{lo:.6g} {hi:.6g}"/>')
            for g, v in geoms[k]:
                out.append(f'{indent} <geom name="g_{lay.body[k]}_{len(out)}" {g} mass="{dens * v:.6g}"/>')
            if not geoms[k]:  # zero-length bones only: hinges need a mass to move
                i = 0.4 * NO_GEOM_MASS * 0.02**2
                out.append(f'{indent} <inertial pos="0 0 0" mass="{NO_GEOM_MASS:g}" diaginertia="{i:g} {i:g} {i:g}"/>')
            for c in skeleton.children(k):
                emit(c, indent + " ")
            out.append(f"{indent}</body>")

        emit(lay.pelvis, "")
        out.append("</worldbody>")
        if gains is not None:
            out.append("<actuator>")
            for k in lay.hinged:
                kp, kv, fr = gains[k]
                for ax, (nm, _) in enumerate(HINGE_AXES):
                    if lock[k, ax]:
                        continue
                    out.append(f'<position name="a_{lay.body[k]}_{nm}" joint="{lay.body[k]}_{nm}" kp="{kp[ax]:.6g}" '
                               f'kv="{kv[ax]:.6g}" forcerange="{-fr[ax]:.6g} {fr[ax]:.6g}"/>')
            w = 2 * np.pi * harness_hz
            for i, nm in enumerate(HARNESS):
                gear = np.zeros(6)
                gear[i] = 1.0
                m = mass_kg if i < 3 else harness_inertia
                ref = "ref_pos" if i < 3 else "ref_rot"
                out.append(f'<position name="{nm}" site="root" refsite="{ref}" gear="{_f(gear)}" '
                           f'kp="{m * w * w:.6g}" kv="{2 * m * w:.6g}" forcerange="0 0"/>')
            out.append("</actuator>")
        out.append("</mujoco>")
        return "\n".join(s for s in out if s)

    # ---- gains need M_jj and subtree COMs at the neutral pose: compile a draft first (with
    # placeholder gains when the compiled model is what is wanted: actuators do not change the
    # mass matrix or the subtree COMs, and the gains are written into it afterwards)
    placeholder = {k: (np.ones(3), np.ones(3), np.ones(3)) for k in lay.hinged}
    draft = _compile(xml(placeholder if compiled else None), skeleton, lay)
    d = mujoco.MjData(draft)
    d.qpos[2] = 1.0
    mujoco.mj_forward(draft, d)
    M = np.zeros((draft.nv, draft.nv))
    mujoco.mj_fullM(draft, d, M)
    leg = set()
    for f in skeleton.foot_joints():
        k = f
        while k != lay.pelvis and k >= 0:
            leg.add(k)
            k = int(parents[k])
    gains = {}
    for k in lay.hinged:
        bid = mujoco.mj_name2id(draft, mujoco.mjtObj.mjOBJ_BODY, lay.body[k])
        if k in leg:
            m_load = mass_kg
            lever = float(np.linalg.norm(offsets[skeleton.children(k)[0]])) * 0.5 if k in lay.toes and \
                skeleton.children(k) else (0.05 if k in lay.toes else leg_lever)
        else:
            m_load = float(draft.body_subtreemass[bid])
            lever = max(float(np.linalg.norm(d.subtree_com[bid] - d.xpos[bid])), 0.05)
        static = m_load * G * lever
        kp, kv, fr = np.zeros(3), np.zeros(3), np.zeros(3)
        for ax, (nm, _) in enumerate(HINGE_AXES):
            if lock[k, ax]:
                continue
            jid = mujoco.mj_name2id(draft, mujoco.mjtObj.mjOBJ_JOINT, f"{lay.body[k]}_{nm}")
            Mjj = float(M[draft.jnt_dofadr[jid], draft.jnt_dofadr[jid]])
            kp[ax] = max(stiffness * static, (2 * np.pi * f_pd) ** 2 * Mjj, kp_min)
            kv[ax] = max(2 * np.sqrt(kp[ax] * Mjj), 0.05 * kp[ax])
            fr[ax] = max(3 * static, 0.3 * kp[ax], 20.0)
        gains[k] = (kp, kv, fr)
    if not compiled:
        return xml(gains)
    # the values the text would carry (6 significant digits), as MuJoCo's compiler stores a
    # position actuator: gainprm[0] = kp, biasprm[1:3] = (-kp, -kv)
    r6 = lambda v: float(f"{v:.6g}")  # noqa: E731
    for k in lay.hinged:
        kp, kv, fr = gains[k]
        for ax, (nm, _) in enumerate(HINGE_AXES):
            if lock[k, ax]:
                continue
            a = mujoco.mj_name2id(draft, mujoco.mjtObj.mjOBJ_ACTUATOR, f"a_{lay.body[k]}_{nm}")
            draft.actuator_gainprm[a, 0] = r6(kp[ax])
            draft.actuator_biasprm[a, 1] = -r6(kp[ax])
            draft.actuator_biasprm[a, 2] = -r6(kv[ax])
            draft.actuator_forcerange[a] = (-r6(fr[ax]), r6(fr[ax]))
    return draft


def _hip_point(skeleton: Skeleton, c: int, feet: set[int], Pn: np.ndarray) -> np.ndarray | None:
    """Where leg ``c`` (a child of the pelvis) leaves the pelvis, in the pelvis frame: ``c``'s
    offset, or -- through zero-length hip joints -- the first joint towards the foot that lies
    >= 1 cm from the pelvis (None if there is none)."""
    off = np.asarray(skeleton.offsets[c], dtype=float)
    if np.linalg.norm(off) >= 0.01:
        return off
    k = c
    while np.linalg.norm(Pn[k]) < 0.01:
        nxt = [j for j in skeleton.children(k) if any(a in feet for a in _descendants(skeleton, j))]
        if not nxt:
            return None
        k = nxt[0]
    return Pn[k]


def _body_forward(skeleton: Skeleton) -> np.ndarray:
    """The body's forward axis in the pelvis frame (rest offsets; representation.body_frame)."""
    from scloop.motion.representation import heading_axis

    return heading_axis(skeleton)


def _descendants(skeleton: Skeleton, j: int) -> list[int]:
    out, stack = [], [j]
    while stack:
        k = stack.pop()
        out.append(k)
        stack.extend(skeleton.children(k))
    return out
