"""Exceptions that the command line turns into one clear error line."""


class DsrError(Exception):
    """Base class of every error dsr reports to the user without a traceback."""


class InputError(DsrError):
    """Bad user input: a file that cannot be read, a wrong shape, NaN values, ...

    Parameters
    ----------
    message : str
        What is wrong.
    path : str or None
        The file the problem is in, named first in the error line.
    """

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class OutputError(DsrError):
    """An output that cannot be written: a full disk, a read-only or missing folder, no permission.

    Parameters
    ----------
    message : str
        What went wrong and what to do.
    path : str or None
        The output file or folder, named first in the error line.
    """

    def __init__(self, message, path=None):
        self.path = None if path is None else str(path)
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class ConfigError(DsrError):
    """An unknown preset, an unknown key or a value out of range in a config."""


class TrainingDiverged(DsrError):
    """Training produced NaN/Inf repeatedly and gave up."""
