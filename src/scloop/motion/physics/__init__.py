"""MuJoCo physics self-correction of motion clips (docs/paper.md §3.3): an MJCF humanoid built from
the clip's skeleton (:mod:`.mjcf`) imitates the clip by harnessed PD tracking (:mod:`.tracking`);
the simulated motion is the corrected clip.  ``mujoco`` is imported lazily."""

from scloop.motion.physics.mjcf import build_mjcf, layout
from scloop.motion.physics.tracking import TrackResult, skeleton_digest, track, track_many

__all__ = ["TrackResult", "build_mjcf", "layout", "skeleton_digest", "track", "track_many"]
