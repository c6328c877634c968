"""User-facing errors.

Anything that is the user's mistake (a missing file, a malformed dataset, a bad config value) is raised
as :class:`AdvrmError`. The CLI prints its message as one line and exits with code 2, without a
traceback; everything else is a bug and keeps its traceback.
"""


class AdvrmError(Exception):
    """A problem with the user's input: the message says what is wrong and how to fix it."""

    exit_code = 2
