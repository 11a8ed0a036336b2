"""Skeletons, motion clips and forward kinematics.

A :class:`Skeleton` is a kinematic tree: joint ``j`` has parent ``parents[j]`` (-1 for the root,
parents always precede children) and rest offset ``offsets[j]`` (metres, in the parent's frame).
A :class:`Clip` holds per-frame *local* joint rotations ``R[t, j]`` (3x3, parent frame) and local
translations ``p[t, j]`` (the root's row is its world position; other rows are the bone offsets,
or per-frame translations when the file animates them).  Forward kinematics:

    G[t, root] = R[t, root],            x[t, root] = p[t, root]
    G[t, j]    = G[t, parent(j)] R[t, j]
    x[t, j]    = x[t, parent(j)] + G[t, parent(j)] p[t, j]

World frame: Z up, metres.

Body size: :func:`body_height` is the length of the bone chain from the head joint to the ankles
(rotation-free, so it does not depend on the rest pose or the file's axes); it is what the BVH
reader infers units from (:mod:`scloop.motion.bvh`) and what the physics model checks before it
builds a humanoid.  For an adult it is ~0.8 x the standing height (Bandai-Namco: 1.34 m;
DeepMimic humanoid3d, which has no head joint, shoulder to ankle: 1.46 m).  Shapes that cannot be used raise
:class:`SkeletonError`, a ``ValueError`` naming the joint and what is allowed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

FOOT_KEYWORDS = ("toe", "foot", "ankle")
HEAD_KEYWORDS = ("head",)
# head-to-ankle bone chain of a human (m): "typical" covers adults (standing ~1.25-2.15 m), the
# "plausible" range everything from a toddler to beyond the tallest people on record
TYPICAL_BODY_HEIGHT_M = (1.0, 1.75)
PLAUSIBLE_BODY_HEIGHT_M = (0.6, 2.2)


class SkeletonError(ValueError):
    """A skeleton that cannot be used for what was asked (the message names the joint, the value
    and what is allowed)."""


@dataclass(frozen=True)
class Skeleton:
    """``names`` (J,), ``parents`` int (J,) with -1 for the root, ``offsets`` (J, 3) metres."""

    names: tuple[str, ...]
    parents: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.parents)
        if p.ndim != 1 or len(p) != len(self.names) or np.asarray(self.offsets).shape != (len(p), 3):
            raise ValueError("Skeleton: names, parents (J,) and offsets (J, 3) must agree")
        if p[0] != -1 or any(not (0 <= p[j] < j) for j in range(1, len(p))):
            raise ValueError("Skeleton: joint 0 must be the root and every parent must precede its child")

    @property
    def n_joints(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def children(self, j: int) -> list[int]:
        return [int(c) for c in np.flatnonzero(np.asarray(self.parents) == j)]

    def bone_lengths(self) -> np.ndarray:
        """(J,) length of the bone from each joint's parent to it (0 for the root)."""
        return np.linalg.norm(np.asarray(self.offsets, dtype=float), axis=1) * (np.asarray(self.parents) >= 0)

    def foot_joints(self) -> list[int]:
        """Joints whose name says foot, toe or ankle (the contact joints of the metrics)."""
        return [j for j, n in enumerate(self.names) if any(k in n.lower() for k in FOOT_KEYWORDS)]

    def rest_positions(self) -> np.ndarray:
        """(J, 3) joint positions with every local rotation the identity (the rest pose)."""
        off = np.asarray(self.offsets, dtype=float)
        P = np.zeros_like(off)
        for j, p in enumerate(np.asarray(self.parents)):
            P[j] = off[j] if p < 0 else P[p] + off[j]
        return P

    def chain_length(self, a: int, b: int) -> float:
        """Length of the bone path between joints ``a`` and ``b`` (through their common ancestor)."""
        parents = np.asarray(self.parents)
        L = self.bone_lengths()
        up_a, k = {}, a
        dist = 0.0
        while k >= 0:
            up_a[k] = dist
            dist += L[k]
            k = int(parents[k])
        dist, k = 0.0, b
        while k not in up_a:
            dist += L[k]
            k = int(parents[k])
        return float(dist + up_a[k])


def body_landmarks(skeleton: Skeleton) -> tuple[int, list[int]] | None:
    """(head joint, ankle joints) of a human-like skeleton, or None when it does not look like one.

    Head: the first joint whose name says head; feet: the joints whose name says foot / toe /
    ankle that have such a joint below them (ankles), else all of them.  Without those names a
    skeleton of 10 or more joints is measured in its rest pose (Z up): the highest joint is the
    head and the lowest the foot.  Smaller unnamed skeletons are not taken for a body."""
    J = skeleton.n_joints
    names = [n.lower() for n in skeleton.names]
    head = next((j for j, n in enumerate(names) if any(k in n for k in HEAD_KEYWORDS)), None)
    feet = skeleton.foot_joints()
    fs = set(feet)
    ankles = [f for f in feet if any(c in fs for c in skeleton.children(f))] or feet
    if head is None or not ankles:
        if J < 10:
            return None
        z = skeleton.rest_positions()[:, 2]
        head = int(np.argmax(z)) if head is None else head
        ankles = ankles or [int(np.argmin(z))]
    ankles = [a for a in ankles if a != head]
    return (head, ankles) if ankles else None


def body_height(skeleton: Skeleton) -> float | None:
    """Head-to-ankle length of the skeleton along its bones (skeleton units; the mean over the
    ankles of :meth:`Skeleton.chain_length`), or None for a skeleton that does not look like a
    body (:func:`body_landmarks`).  ~0.8 x the standing height of an adult (module docstring)."""
    marks = body_landmarks(skeleton)
    if marks is None:
        return None
    head, ankles = marks
    h = float(np.mean([skeleton.chain_length(head, a) for a in ankles]))
    return h if h > 0 else None


def fk(parents: np.ndarray, rotations: np.ndarray, translations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Forward kinematics (module docstring).  ``rotations`` (T, J, 3, 3) local,
    ``translations`` (T, J, 3) local.  Returns world positions (T, J, 3) and world rotations
    (T, J, 3, 3).  Loops over joints (J ~ 20-60), vectorised over frames."""
    rotations = np.asarray(rotations, dtype=float)
    translations = np.asarray(translations, dtype=float)
    T, J = rotations.shape[:2]
    G = np.empty_like(rotations)
    X = np.empty((T, J, 3))
    for j in range(J):
        p = parents[j]
        if p < 0:
            G[:, j] = rotations[:, j]
            X[:, j] = translations[:, j]
        else:
            G[:, j] = G[:, p] @ rotations[:, j]
            X[:, j] = X[:, p] + np.einsum("tab,tb->ta", G[:, p], translations[:, j])
    return X, G


@dataclass(frozen=True)
class Clip:
    """One motion: local ``rotations`` (T, J, 3, 3), local ``translations`` (T, J, 3) (row 0 =
    root world position), frame rate ``fps``, ``name`` and string ``labels`` (action, style,
    text ...)."""

    skeleton: Skeleton
    rotations: np.ndarray
    translations: np.ndarray
    fps: float
    name: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        T, J = self.rotations.shape[:2]
        if self.rotations.shape != (T, J, 3, 3) or self.translations.shape != (T, J, 3) or J != self.skeleton.n_joints:
            raise ValueError(f"Clip {self.name!r}: rotations {self.rotations.shape} / translations "
                             f"{self.translations.shape} do not match a {self.skeleton.n_joints}-joint skeleton")

    @property
    def n_frames(self) -> int:
        return self.rotations.shape[0]

    @property
    def duration(self) -> float:
        return self.n_frames / self.fps

    @property
    def root_position(self) -> np.ndarray:
        return self.translations[:, 0]

    def positions(self) -> np.ndarray:
        """World joint positions (T, J, 3), metres."""
        return fk(self.skeleton.parents, self.rotations, self.translations)[0]

    def world_rotations(self) -> np.ndarray:
        return fk(self.skeleton.parents, self.rotations, self.translations)[1]
