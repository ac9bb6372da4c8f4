"""Runtime trace of the image operations that model code actually executed.

Rewards are computed from this trace, so it must only contain operations that ran and
returned, with their real (possibly computed) arguments. Library functions are wrapped
in the session process; a wrapper records an op only when it is called *directly* from
model code (a frame whose file name is ``<cell N>``), so the internal calls a library
makes on its own behalf (``ImageOps.fit`` cropping, ``rotate`` transposing) never show up.

Conventions, shared by PIL, OpenCV and NumPy so that rewards need not care which
library the model used:

* ``rotate``: ``angle`` counter-clockwise degrees as given, ``angle_ccw`` normalised to
  [0, 360), ``expand`` whether the canvas grew to hold the rotated image;
* ``flip``: ``axis`` is ``horizontal`` (left-right), ``vertical`` (top-bottom) or ``both``;
* ``transpose``: ``kind`` is ``transpose`` (main diagonal) or ``transverse`` (anti-diagonal);
* ``crop``: ``box`` = ``[x0, y0, x1, y1]`` in the operand's pixel coordinates;
* ``resize``: ``size`` and ``from_size`` as ``[width, height]``; ``pad``: ``border`` as
  ``[left, top, right, bottom]``;
* every image-like object gets a session-unique ``id`` and, when it descends from an input
  image, its ``origin`` (the input's index). Input images have ids equal to their index;
* ``unchanged``: the op's result holds exactly its operand's pixels (it did nothing).
"""

from __future__ import annotations

from codevision.sandbox.tracing.core import CELL_PREFIX, TRACER, Tracer, cell_filename
from codevision.sandbox.tracing.numpy_ops import install_numpy
from codevision.sandbox.tracing.opencv import cv_color_codes, install_cv2
from codevision.sandbox.tracing.pil import install_pil

__all__ = ["CELL_PREFIX", "TRACER", "Tracer", "cell_filename", "install"]

_INSTALLED = False


def install() -> None:
    """Install all tracing wrappers (idempotent); called once in the fork server."""
    global _INSTALLED
    if _INSTALLED:
        return
    install_pil()
    install_numpy()
    install_cv2()
    cv_color_codes()  # built here so that every forked session inherits the table
    _INSTALLED = True
