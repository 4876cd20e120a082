"""The one exception type whose message is meant for the person running the command."""


class AgadError(Exception):
    """A problem the user can fix; the message names the input and the fix.

    The CLI prints it without a traceback and exits with status 2.
    """
