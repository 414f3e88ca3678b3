"""User-facing errors.

Every problem a user can cause and fix (a missing or corrupt file, a layer name the
network does not have, weights that do not fit, an image too small) raises a
:class:`RefstyleError` whose message names the problem and the fix. The command line
prints that message on one line, without a traceback, and exits non-zero. Anything
else that escapes is a bug in refstyle and keeps its traceback.
"""


class RefstyleError(Exception):
    """A problem with the user's input, reported as one clear line."""


class WeightsError(RefstyleError):
    """A weights file that is missing, corrupt, or does not fit the architecture."""


class LayerError(RefstyleError):
    """A layer name that the network does not have."""


class ImageError(RefstyleError):
    """An image that is missing, unreadable, or unusable."""


class RefstyleWarning(UserWarning):
    """Something the user should know and may have to fix, that does not stop the run (one line on stderr)."""


class NonFiniteWeightsError(WeightsError):
    """Weights holding NaN or Inf: a damaged file, or a training run that diverged."""
