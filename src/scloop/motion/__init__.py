"""Human motion: skeletons, clips, forward kinematics, readers (BVH, DeepMimic JSON, HumanML3D),
the canonical representation, physics metrics and corrections (docs/paper.md §3.3).

World frame everywhere: Z up, metres, right-handed.  Readers convert (BVH files are usually Y up
and in centimetres).
"""

from scloop.motion.skeleton import Clip, Skeleton, fk

__all__ = ["Clip", "Skeleton", "fk"]
