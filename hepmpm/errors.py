"""Exceptions whose message is meant for the user.

The CLI prints a :class:`HepmpmError` as one line and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.
"""


class HepmpmError(Exception):
    """An error caused by the user's input (a file, a flag, a config key), not by hepmpm."""


class ConfigError(HepmpmError):
    """A configuration file or override is invalid: unknown key, wrong type, bad value."""
