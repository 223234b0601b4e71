"""The one error type that reaches users as a single line and exit status 2."""


class UserError(Exception):
    """Bad input from a user: an unknown name, a malformed file, a wrong value.

    The command line prints ``error: <message>`` and exits with status 2; the library
    raises it wherever the fault lies with what it was given rather than with itself.
    """
