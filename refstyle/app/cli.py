"""The ``refstyle`` command line: ``main(argv=None)``.

``python -m refstyle`` and the ``refstyle`` console script call it, and so do the
tests. The options are :mod:`refstyle.app.parser`'s, the commands
:mod:`refstyle.app.commands`'. A user error (:class:`~refstyle.errors.RefstyleError`)
is printed as one line on stderr and gives exit status 1, or 2 for a malformed
description (:class:`~refstyle.errors.UsageError`, a bad grid spec); a bad option one line
and exit status 2 (:class:`~refstyle.app.parser.Parser`); Ctrl-C exit status 130 and
SIGTERM 143 (:mod:`refstyle.app.signals`), after a synthesis has written its best image so far.
"""

import sys
import warnings

from ..errors import RefstyleError, RefstyleWarning
from .parser import build_parser
from .signals import stop_reason, stop_signals, stop_status


def _warn(message, category, filename, lineno, file=None, line=None):
    """A refstyle warning as one line on stderr, like its errors; any other as Python prints it."""
    if issubclass(category, RefstyleWarning):
        print(f"refstyle: warning: {message}", file=sys.stderr)
    else:
        sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(), stop_signals():
            warnings.showwarning = _warn
            status = args.run(args)
    except RefstyleError as e:
        print(f"refstyle: error: {e}", file=sys.stderr)
        return e.exit_status
    except KeyboardInterrupt:
        print(f"refstyle: {stop_reason()}", file=sys.stderr)
        return stop_status()
    return status or 0
