"""Every error of the library, one hierarchy. The CLI reports a PerfmambaError as one line on stderr (no traceback)
with a non-zero exit; each also derives from the built-in exception a caller would expect (ValueError for bad
input, FileNotFoundError for a missing file, RuntimeError for what this machine cannot do)."""


def first_line(e: Exception) -> str:
    """The first line of an exception's message (its type's name when it has none): one-line error reports."""
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


class PerfmambaError(Exception):
    """Base class: bad input, described in one line."""


# models and their files
class ConfigError(PerfmambaError, ValueError):
    """A configuration that cannot describe a model."""


class CheckpointError(PerfmambaError, ValueError):
    """A checkpoint that cannot be read or written."""


class BackendUnavailable(PerfmambaError, RuntimeError):
    """The requested backend cannot run here (missing package or device)."""


class KernelInputError(PerfmambaError, ValueError):
    """Shapes, dtypes or devices a kernel cannot take."""


# data, training, evaluation
class CorpusError(PerfmambaError):
    """A corpus, tokenizer or text file that cannot be used, described in one line."""


class CorpusFileNotFound(CorpusError, FileNotFoundError):
    """A path that does not exist (catchable as FileNotFoundError too)."""


class TrainError(PerfmambaError, ValueError):
    """Training settings or data that cannot be used."""


class EvaluationError(PerfmambaError, ValueError):
    """Evaluation input that cannot be used (too little text, unknown task, mismatched tokenizer, …)."""


# measuring, cutting, reporting
class ProfilingError(PerfmambaError, ValueError):
    """Bad input to a profiling function (phase, sizes, methods)."""


class PruningError(PerfmambaError, ValueError):
    """A pruning request that cannot be carried out (bad ratio, criterion, mode, calibration, ...)."""


class ResultsError(PerfmambaError, ValueError):
    """A results file that cannot be read or appended to."""


class ExperimentError(PerfmambaError, ValueError):
    """An experiment that cannot run with the arguments given."""


class PlotError(PerfmambaError, ValueError):
    """Rows that cannot be drawn (none, or not the metrics a figure needs)."""


class PaperError(PerfmambaError):
    """The paper's data files are missing or malformed."""


# the artifact
class NotebookError(PerfmambaError):
    """A notebook that cannot be run with the parameters given."""


class BookBuildError(PerfmambaError, RuntimeError):
    """The book did not build cleanly."""
