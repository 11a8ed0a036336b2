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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np

FOOT_KEYWORDS = ("toe", "foot", "ankle")


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
