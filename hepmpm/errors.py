"""Exceptions whose message is meant for the user.

The CLI prints a :class:`HepmpmError` as one line and exits non-zero, without a traceback;
anything else is a bug and keeps its traceback.
"""


def one_line_reason(err: BaseException) -> str:
    """Why ``err`` happened, in one line: the OS's words for an ``OSError`` (``No space left on
    device``), else the first line of its message, else its type's name."""
    strerror = getattr(err, "strerror", None)
    if strerror:
        return str(strerror)
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


class HepmpmError(Exception):
    """An error caused by the user's input (a file, a flag, a config key), not by hepmpm."""


class ConfigError(HepmpmError):
    """A configuration file or override is invalid: unknown key, wrong type, bad value."""
