"""Errors that carry one clear sentence for the user."""


class EdgeError(Exception):
    """Base class: the message is a complete sentence meant for the user."""


class PreprocessError(EdgeError, ValueError):
    """An input (frame, audio window, config) that preprocessing cannot use."""


class ConfigError(EdgeError, ValueError):
    """A configuration with an unknown key, a missing key or a wrong type."""


class BundleError(EdgeError):
    """A model bundle that is missing, incomplete, corrupt or incompatible."""


class UsageError(EdgeError):
    """A command line that cannot run (one sentence)."""
