"""The ``hiercls`` command line: ``demo`` and the data commands over the Python API.

``extract``, ``fit``, ``evaluate``, ``predict``, ``necrosis`` and ``report`` do from a shell what
:class:`~hiercls.RadiomicsTransformer`, :func:`~hiercls.make_fusion_pipeline`,
:func:`~hiercls.evaluation.cross_validation.cross_validate_by_patient`, :mod:`hiercls.evaluation.necrosis` and
:func:`hiercls.reporting.html.write_report` do in Python. A problem with the inputs (a path that
does not exist, a CSV without a needed column, an option out of range) ends the command
with one line on stderr and exit status 2.

:mod:`hiercls.cli.parser` builds the argument parser (with :mod:`hiercls.cli.options`);
:mod:`hiercls.cli.commands` maps each command to its thin handler in
:mod:`hiercls.cli.training` or :mod:`hiercls.cli.prediction`.
"""

import sys

from ..exceptions import CommandError
from .commands import COMMANDS
from .parser import build_parser

__all__ = ["CommandError", "build_parser", "main"]


def main(argv=None):
    """Entry point of the ``hiercls`` command.

    Parameters
    ----------
    argv : list of str or None, default=None
        The arguments; None reads ``sys.argv``.

    Returns
    -------
    status : int
        0 on success, 2 for a problem with the inputs (reported on stderr, one line).
    """
    from ..data.images import UnreadableTileError

    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    handler = COMMANDS[args.command]
    try:
        return handler(args)
    except CommandError as error:
        print(f"hiercls {args.command}: error: {error}", file=sys.stderr)
        return 2
    except UnreadableTileError as error:
        # A tile that became unreadable after the check (or one the check did not cover).
        print(f"hiercls {args.command}: error: {' '.join(str(error).split())}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"hiercls {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
