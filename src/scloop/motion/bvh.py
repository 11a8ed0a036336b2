"""BVH reader for any skeleton.

Supports 3-channel (rotation) and 6-channel (position + rotation) joints, any Euler order (the
order of the rotation channels; BVH rotations compose intrinsically in channel order:
``R = R_c1 R_c2 R_c3``), any frame rate, root translation.  ``End Site`` blocks are not joints
(they have no channels) and are skipped.  Joints may have any subset of the six channels (0 to
6); a joint without rotation channels keeps the identity, one without position channels its
OFFSET.  Axes: ``up`` is the file's up axis ("y" for almost all BVH); output is Z up.

Units (``scale``): metres per file unit, a unit name (:data:`UNITS`: ``m``, ``cm``, ``mm``, ``in``,
``ft``, and ``cmu`` = 1/0.45 inch, the unit of the CMU motion-capture database's ASF/AMC files and
of the BVH conversions commonly distributed), or ``"auto"`` (default): the body's head-to-ankle
length along the bones (:func:`scloop.motion.skeleton.body_height`, ~0.8 x standing height, so
the rest pose and zero-length bones do not matter) is read in each unit of :data:`AUTO_UNITS` in
turn (m, cm, mm, in, cmu) and the first that gives a typical adult (1.0-1.75 m head to ankle) is
taken, else the first that gives a plausible human (``height_range``, default 0.6-2.2 m), else
:class:`BVHUnitsError`.  A CMU file (a 1.5 m chain is ~27 units) thus reads in ``cmu``, not in
centimetres (0.27 m) or inches (0.68 m).  An explicit unit or number is checked against
``height_range`` too (``height_range=None`` turns the check off, for a non-human skeleton).  A
skeleton that does not look like a body (no head and feet by name, and fewer than 10 joints) keeps
the older rule: centimetres when the median bone is longer than 2 units, else metres.

Text encoding: files are decoded as UTF-8 (ASCII, what exporters write, is a subset; a UTF-8
byte-order mark is accepted).  Other encodings (Latin-1, Shift-JIS joint names) are not guessed:
a byte that is not UTF-8 raises :class:`BVHError` with its offset -- re-encode the file.

Malformed files raise :class:`BVHError` (a ``ValueError``) naming the file and, where there is
one, the line: bad hierarchy (unbalanced braces, a JOINT outside a ROOT, a second ROOT, missing
OFFSET/CHANNELS, non-numeric or non-finite OFFSET values, repeated channels), unknown channel
names, ``Frames`` that is not an integer >= 1, ``Frame Time`` that is not a positive finite
number of seconds, a frame row whose value count differs from the HIERARCHY's channel count, a
non-numeric or non-finite value in a frame, a truncated MOTION block or extra rows.  Implausible
units raise :class:`BVHUnitsError` (a ``BVHError``) with the body height in every unit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.motion.skeleton import PLAUSIBLE_BODY_HEIGHT_M, TYPICAL_BODY_HEIGHT_M, Clip, Skeleton, body_height

_POS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
_ROT = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
# file axes (Y up) -> scloop axes (Z up): (x, y, z) -> (x, -z, y), a proper rotation
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


# metres per file unit; "cmu": the CMU mocap database's unit, 1/0.45 inch (its ASF ":units length 0.45")
UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001, "in": 0.0254, "ft": 0.3048, "cmu": 0.0254 / 0.45}
AUTO_UNITS = ("m", "cm", "mm", "in", "cmu")  # tried in this order by scale="auto"


class BVHError(ValueError):
    """A malformed BVH file."""


class BVHUnitsError(BVHError):
    """A BVH file whose body is not of human size in the units asked for (or in any unit tried)."""


def read_bvh(path: str | Path, *, scale: float | str = "auto", up: str = "y", labels=None,
             height_range: tuple[float, float] | None = PLAUSIBLE_BODY_HEIGHT_M) -> Clip:
    """Read a BVH file into a :class:`Clip` (Z up, metres).  ``scale``: ``"auto"``, a unit name of
    :data:`UNITS` or metres per file unit; ``height_range``: the allowed head-to-ankle length in
    metres (None: no check); module docstring."""
    path = Path(path)
    named = isinstance(scale, str) and (scale == "auto" or scale in UNITS)
    number = isinstance(scale, (int, float)) and not isinstance(scale, bool) and np.isfinite(scale) and scale > 0
    if not (named or number):
        raise BVHError(f"{path}: scale={scale!r}; allowed: 'auto', a unit name ({', '.join(UNITS)}) or a "
                       "positive number of metres per file unit")
    if height_range is not None:
        try:
            lo, hi = (float(v) for v in height_range)
            ok = 0 < lo < hi
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise BVHError(f"{path}: height_range={height_range!r}; allowed: None or (low, high) metres "
                           "with 0 < low < high")
    if up not in ("y", "z"):
        raise BVHError(f"{path}: up axis {up!r}; allowed: y, z")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BVHError(f"{path}: cannot read ({exc})") from None
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise BVHError(f"{path}:{line}: byte 0x{raw[exc.start]:02x} at offset {exc.start} is not UTF-8 text; "
                       "BVH files are read as UTF-8 (or ASCII): re-encode the file") from None
    lines = text.splitlines()
    names: list[str] = []
    parents: list[int] = []
    offsets: list[list[float]] = []
    channels: list[list[str]] = []
    stack: list[int] = []
    i = 0

    def err(msg: str, line: int | None = None) -> BVHError:
        return BVHError(f"{path}:{(line if line is not None else i) + 1}: {msg}")

    while i < len(lines) and not lines[i].strip():
        i += 1
    if i >= len(lines) or lines[i].strip() != "HIERARCHY":
        raise err("expected HIERARCHY")
    i += 1
    pending: int | None = None  # joint whose '{' is expected
    in_end = 0
    depth = 0
    while i < len(lines):
        tok = lines[i].split()
        i += 1
        if not tok:
            continue
        key = tok[0]
        if pending is not None and key != "{":
            raise err(f"expected '{{' after {'End Site' if pending == -2 else 'JOINT ' + names[pending]!s}", i - 1)
        if key in ("ROOT", "JOINT", "End") and len(tok) > 1 and tok[-1] == "{":
            # "JOINT name {" on one line: treat the brace as its own line
            lines.insert(i, "{")
            tok = tok[:-1]
        if key == "MOTION":
            break
        if key in ("ROOT", "JOINT"):
            if len(tok) < 2:
                raise err(f"{key} without a name", i - 1)
            if key == "ROOT" and names:
                raise err("a second ROOT (only one skeleton per file is supported)", i - 1)
            if key == "JOINT" and not stack:
                raise err("JOINT outside a ROOT", i - 1)
            names.append(" ".join(tok[1:]))
            parents.append(stack[-1] if stack else -1)
            offsets.append([])
            channels.append([])
            pending = len(names) - 1
        elif key == "End":
            if not stack:
                raise err("End Site outside a joint", i - 1)
            in_end = 1
            pending = -2
        elif key == "{":
            depth += 1
            if pending is None:
                raise err("'{' without ROOT/JOINT/End Site", i - 1)
            if pending >= 0:
                stack.append(pending)
            pending = None
        elif key == "}":
            depth -= 1
            if depth < 0:
                raise err("unbalanced '}'", i - 1)
            if in_end:
                in_end = 0
            else:
                stack.pop()
        elif key == "OFFSET":
            if in_end:
                continue
            if not stack or len(tok) != 4:
                raise err("OFFSET needs 3 numbers inside a joint", i - 1)
            try:
                off = [float(v) for v in tok[1:]]
            except ValueError:
                raise err(f"OFFSET values not numbers: {tok[1:]}", i - 1) from None
            if not np.isfinite(off).all():
                raise err(f"OFFSET values not finite: {tok[1:]}", i - 1)
            offsets[stack[-1]] = off
        elif key == "CHANNELS":
            if not stack or in_end:
                raise err("CHANNELS outside a joint", i - 1)
            try:
                n = int(tok[1])
            except (ValueError, IndexError):
                raise err("CHANNELS needs a count", i - 1) from None
            ch = tok[2:]
            if len(ch) != n:
                raise err(f"CHANNELS says {n} but lists {len(ch)}", i - 1)
            bad = [c for c in ch if c not in _POS and c not in _ROT]
            if bad:
                raise err(f"unknown channel(s) {bad}; allowed: {sorted(_POS) + sorted(_ROT)}", i - 1)
            if len(set(ch)) != len(ch):
                raise err(f"repeated channel in {ch}; each channel may appear once per joint", i - 1)
            channels[stack[-1]] = ch
        else:
            raise err(f"unexpected token {key!r} in HIERARCHY", i - 1)
    else:
        raise BVHError(f"{path}: no MOTION block (file truncated?)")
    if depth != 0 or stack:
        raise err("unbalanced braces in HIERARCHY")
    if not names:
        raise err("no joints")
    for j, n in enumerate(names):
        if len(offsets[j]) != 3:
            raise BVHError(f"{path}: joint {n!r} has no OFFSET")
    # ---- MOTION
    def header(prefix: str) -> tuple[str, int]:
        """The value after ``prefix:`` on the next non-blank line, and that line's index."""
        nonlocal i
        while i < len(lines) and not lines[i].strip():
            i += 1
        line = lines[i].strip() if i < len(lines) else ""
        if not line.startswith(prefix) or ":" not in line:
            raise err(f"expected '{prefix}: <value>' (MOTION block truncated?)")
        i += 1
        return line.split(":", 1)[1].strip(), i - 1

    value, at = header("Frames")
    try:
        n_frames = int(value)
    except ValueError:
        raise err(f"Frames: {value!r} is not an integer; allowed: an integer >= 1", at) from None
    if n_frames < 1:
        raise err(f"Frames: {n_frames}; allowed: an integer >= 1 (a clip needs at least one frame)", at)
    value, at = header("Frame Time")
    try:
        frame_time = float(value)
    except ValueError:
        frame_time = float("nan")
    if not np.isfinite(frame_time) or frame_time <= 0:
        raise err(f"Frame Time: {value!r}; allowed: a positive finite number of seconds", at)
    n_ch = sum(len(c) for c in channels)
    rows = [(k, ln) for k, ln in enumerate(lines[i:], start=i) if ln.strip()]
    if len(rows) < n_frames:
        raise BVHError(f"{path}: MOTION block truncated: header says {n_frames} frames, found {len(rows)}")
    if len(rows) > n_frames:
        raise BVHError(f"{path}: MOTION block has {len(rows)} rows but the header says Frames: {n_frames}")
    values = np.empty((n_frames, n_ch))
    for f, (k, ln) in enumerate(rows):
        tok = ln.split()
        if len(tok) != n_ch:
            raise err(f"frame {f} has {len(tok)} values, the HIERARCHY declares {n_ch} channels", k)
        try:
            values[f] = [float(t) for t in tok]
        except ValueError:
            bad = next(t for t in tok if not _is_number(t))
            raise err(f"frame {f}: non-numeric value {bad!r} in the MOTION block", k) from None
    finite = np.isfinite(values).all(axis=1)
    if not finite.all():
        f = int(np.argmin(finite))
        raise err(f"frame {f}: NaN or infinite values in the MOTION block", rows[f][0])
    return _to_clip(path, names, parents, np.array(offsets), channels, values, 1.0 / frame_time, scale, up, labels,
                    height_range)


def _is_number(token: str) -> bool:
    try:
        float(token)
    except ValueError:
        return False
    return True


def _height_table(height: float) -> str:
    return ", ".join(f"{height * UNITS[u]:.3g} m in {u}" for u in AUTO_UNITS)


def _auto_unit(height: float, lo: float, hi: float) -> str | None:
    """The first unit of AUTO_UNITS giving a typical adult, else the first giving ``lo``-``hi`` m."""
    for band in (TYPICAL_BODY_HEIGHT_M, (lo, hi)):
        for u in AUTO_UNITS:
            if band[0] <= height * UNITS[u] <= band[1] and lo <= height * UNITS[u] <= hi:
                return u
    return None


def infer_scale(skeleton: Skeleton, scale: float | str = "auto",
                height_range: tuple[float, float] | None = PLAUSIBLE_BODY_HEIGHT_M, path: str | Path = "") -> float:
    """Metres per unit for ``skeleton`` (file units, Z up): the rule of the module docstring.
    Raises :class:`BVHUnitsError` when the body is not of human size."""
    h = body_height(skeleton)
    where = f"{path}: " if str(path) else ""
    if h is None:  # not a body: the older median-bone rule, no height check
        if scale != "auto":
            return float(UNITS.get(scale, scale))
        # median bone length: ~0.1-0.4 in metres, ~10-40 in centimetres
        bones = np.linalg.norm(np.asarray(skeleton.offsets)[1:], axis=1)
        bones = bones[bones > 0]
        return 0.01 if len(bones) and float(np.median(bones)) > 2.0 else 1.0
    lo, hi = height_range if height_range is not None else (0.0, np.inf)
    auto = _auto_unit(h, lo, hi)
    if scale == "auto":
        if auto is not None:
            return UNITS[auto]
        raise BVHUnitsError(f"{where}the body measures {h:.4g} file units from head to ankle along the bones "
                            f"({_height_table(h)}); none of the units tried ({', '.join(AUTO_UNITS)}) gives a "
                            f"human ({lo:g}-{hi:g} m head to ankle, ~0.8 x standing height); pass scale=<metres "
                            f"per file unit> or a unit name ({', '.join(UNITS)}), or height_range=None for a "
                            "skeleton that is not a human")
    value = float(UNITS.get(scale, scale))
    if not lo <= h * value <= hi:
        raise BVHUnitsError(f"{where}scale={scale!r} makes the body {h * value:.3g} m from head to ankle along the "
                            f"bones ({h:.4g} file units); allowed: {lo:g}-{hi:g} m (a human, ~0.8 x standing "
                            f"height)" + (f"; the file's units look like {auto!r}" if auto else "")
                            + "; pass height_range=None for a skeleton that is not a human")
    return value


def _to_clip(path, names, parents, offsets, channels, values, fps, scale, up, labels, height_range) -> Clip:
    from scipy.spatial.transform import Rotation

    T, J = len(values), len(names)
    parents = np.array(parents)
    C = Y_UP_TO_Z_UP if up == "y" else np.eye(3)
    scale = infer_scale(Skeleton(tuple(names), parents, np.asarray(offsets, float) @ C.T), scale, height_range, path)
    trans = np.broadcast_to(offsets, (T, J, 3)).copy()
    rots = np.broadcast_to(np.eye(3), (T, J, 3, 3)).copy()
    col = 0
    for j in range(J):
        ch = channels[j]
        block = values[:, col: col + len(ch)]
        col += len(ch)
        pos = [(k, _POS[c]) for k, c in enumerate(ch) if c in _POS]
        for k, axis in pos:
            trans[:, j, axis] = block[:, k]
        rot = [(k, _ROT[c]) for k, c in enumerate(ch) if c in _ROT]
        if rot:
            order = "".join(a for _, a in rot)  # upper case = intrinsic, composed in channel order
            angles = block[:, [k for k, _ in rot]]
            rots[:, j] = Rotation.from_euler(order, angles, degrees=True).as_matrix()
    trans *= scale
    # change of axes: p' = C p, R' = C R C^T (for every joint, so FK commutes with C)
    trans = trans @ C.T
    rots = C @ rots @ C.T
    skel = Skeleton(tuple(names), parents, (offsets * scale) @ C.T)
    return Clip(skel, rots, trans, fps, name=Path(path).stem, labels=dict(labels or {}))
