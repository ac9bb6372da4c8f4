"""Image lineage: which part of which input each image of a trajectory shows, verified against its pixels.

Rewards pay for what the model was shown, so they read the lineage of the images returned to it
rather than the ops that merely ran. :class:`LineageTracker` records it as each run comes back:
it follows the session's op trace from a shown image back to an image the host holds, composes the
ops' geometry (:mod:`codevision.lineage.maps`) and replays that view from the real pixels
(:mod:`codevision.lineage.replay`); only images whose pixels agree are ``verified``. The result is
stored on each :class:`~codevision.trajectory.ImageRecord` as a :class:`~codevision.trajectory.Lineage`.
:mod:`codevision.lineage.views` reads the shown images back, and :mod:`codevision.lineage.orientation`
which orientation the model saw (the last image of the input it was shown).
"""

from codevision.lineage.maps import PIXEL_OPS, Unreplayable, op_map
from codevision.lineage.tracker import LineageTracker, orientation_of

__all__ = ["PIXEL_OPS", "LineageTracker", "Unreplayable", "op_map", "orientation_of"]
