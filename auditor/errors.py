"""Exception types. Every message is written for a human: what was wrong and how to fix it."""

from __future__ import annotations


class AuditorError(Exception):
    """Base of every error auditor raises on purpose. The CLI prints the message, exit code 1."""

    exit_code = 1


class UsageError(AuditorError):
    """Bad usage, or input that cannot be audited at all (exit code 2)."""

    exit_code = 2


class ModelLoadError(UsageError):
    """The model spec, weights or target layer cannot be used."""


class TokenGridError(ModelLoadError):
    """A vision transformer's token count fits more than one patch grid: the user must say
    which (--reshape vit:GHxGW)."""


class DataError(UsageError):
    """The data set (folder, manifest, classes) cannot be audited at all."""


class DecodeError(AuditorError):
    """One file could not be decoded; becomes an error row, the run goes on."""


class RunDirectoryError(AuditorError):
    """The run directory cannot be written, is locked, or does not match for resume."""


class RunMismatchError(RunDirectoryError):
    """--out holds another run (other config, model or data) or other files: the command is
    wrong for this directory, so exit code 2 like other bad usage; --overwrite starts again."""

    exit_code = 2
