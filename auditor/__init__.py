"""auditor: audit image classifiers and their data sets for shortcut learning."""

__version__ = "0.1.0"
