"""BVH reader for any skeleton.

Supports 3-channel (rotation) and 6-channel (position + rotation) joints, any Euler order (the
order of the rotation channels; BVH rotations compose intrinsically in channel order:
``R = R_c1 R_c2 R_c3``), any frame rate, root translation.  ``End Site`` blocks are not joints
(they have no channels) and are skipped.  Units: ``scale`` (metres per file unit); ``"auto"``
takes centimetres when the skeleton's total bone length exceeds 20 units (a human is ~10 m of
bones in cm, ~0.1-10 in m or inches) -- pass a number to override.  Axes: ``up`` is the file's
up axis ("y" for almost all BVH); output is Z up.

Malformed files raise :class:`BVHError` naming the file and line: bad hierarchy (unbalanced
braces, a JOINT outside a ROOT, missing OFFSET/CHANNELS), unknown channel names, a channel count
that does not match the frame rows, a truncated MOTION block, non-finite values.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scloop.motion.skeleton import Clip, Skeleton

_POS = {"Xposition": 0, "Yposition": 1, "Zposition": 2}
_ROT = {"Xrotation": "X", "Yrotation": "Y", "Zrotation": "Z"}
# file axes (Y up) -> scloop axes (Z up): (x, y, z) -> (x, -z, y), a proper rotation
Y_UP_TO_Z_UP = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])


class BVHError(ValueError):
    """A malformed BVH file."""


def read_bvh(path: str | Path, *, scale: float | str = "auto", up: str = "y", labels=None) -> Clip:
    """Read a BVH file into a :class:`Clip` (Z up, metres)."""
    path = Path(path)
    try:
        text = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise BVHError(f"{path}: cannot read ({exc})") from None
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
                offsets[stack[-1]] = [float(v) for v in tok[1:]]
            except ValueError:
                raise err(f"OFFSET values not numbers: {tok[1:]}", i - 1) from None
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
    def header(prefix: str) -> str:
        nonlocal i
        while i < len(lines) and not lines[i].strip():
            i += 1
        if i >= len(lines) or not lines[i].strip().startswith(prefix):
            raise err(f"expected '{prefix}' (MOTION block truncated?)")
        value = lines[i].split(":", 1)[1].strip()
        i += 1
        return value

    try:
        n_frames = int(header("Frames"))
        frame_time = float(header("Frame Time"))
    except ValueError:
        raise err("bad Frames / Frame Time value") from None
    if n_frames < 1 or not np.isfinite(frame_time) or frame_time <= 0:
        raise err(f"Frames {n_frames} / Frame Time {frame_time}: need >= 1 frame and a positive frame time")
    n_ch = sum(len(c) for c in channels)
    rows = [ln for ln in lines[i:] if ln.strip()]
    if len(rows) < n_frames:
        raise BVHError(f"{path}: MOTION block truncated: header says {n_frames} frames, found {len(rows)}")
    if len(rows) > n_frames:
        raise BVHError(f"{path}: MOTION block has {len(rows)} rows but the header says Frames: {n_frames}")
    try:
        data = np.array([np.array(r.split(), dtype=float) for r in rows[:n_frames]], dtype=object)
    except ValueError:
        raise BVHError(f"{path}: non-numeric value in the MOTION block") from None
    lens = {len(r) for r in data}
    if lens != {n_ch}:
        bad = next(k for k, r in enumerate(data) if len(r) != n_ch)
        raise BVHError(f"{path}: frame {bad} has {len(data[bad])} values, the HIERARCHY declares {n_ch} channels")
    values = np.stack(list(data)).astype(float)
    if not np.isfinite(values).all():
        raise BVHError(f"{path}: NaN or infinite values in the MOTION block")
    return _to_clip(path, names, parents, np.array(offsets), channels, values, 1.0 / frame_time, scale, up, labels)


def _to_clip(path, names, parents, offsets, channels, values, fps, scale, up, labels) -> Clip:
    from scipy.spatial.transform import Rotation

    T, J = len(values), len(names)
    parents = np.array(parents)
    if scale == "auto":
        # median bone length: ~0.1-0.4 in metres, ~10-40 in centimetres (a start position stored
        # in an offset, as Bandai's Hips, does not move the median)
        bones = np.linalg.norm(offsets[1:], axis=1)
        bones = bones[bones > 0]
        scale = 0.01 if len(bones) and float(np.median(bones)) > 2.0 else 1.0
    scale = float(scale)
    if up not in ("y", "z"):
        raise BVHError(f"{path}: up axis {up!r}; allowed: y, z")
    C = Y_UP_TO_Z_UP if up == "y" else np.eye(3)
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
