"""One handler per ``hiercls`` command: check the arguments, call the library, print.

``run_<command>(args)`` takes the namespace of :func:`hiercls.cli.parser.build_parser` and
returns the exit status. A problem with the inputs raises
:class:`~hiercls.exceptions.CommandError`, which :func:`hiercls.cli.main` reports on one
line with exit status 2. The handlers live by what they do:
:mod:`~hiercls.cli.training` (``demo``, ``extract``, ``fit``, ``evaluate``) and
:mod:`~hiercls.cli.prediction` (``predict``, ``report``, ``necrosis``, ``slide``), over
:mod:`~hiercls.cli.io` (inputs and outputs) and :mod:`~hiercls.cli.model_options`.
"""

from ..exceptions import CommandError
from .model_options import resolve_preset
from .prediction import run_necrosis, run_predict, run_report, run_slide
from .training import run_demo, run_evaluate, run_extract, run_fit

#: The handler of each command, by the name the parser gives it.
COMMANDS = {
    "demo": run_demo,
    "extract": run_extract,
    "fit": run_fit,
    "evaluate": run_evaluate,
    "predict": run_predict,
    "report": run_report,
    "necrosis": run_necrosis,
    "slide": run_slide,
}

__all__ = ["COMMANDS", "CommandError", "run_demo", "run_evaluate", "run_extract", "run_fit",
           "run_necrosis", "run_predict", "run_report", "run_slide", "resolve_preset"]
