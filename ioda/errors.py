"""One exception type for bad user input: the CLI prints it as one line and exits non-zero."""


class IodaError(Exception):
    """A user-facing error. The message must name the file or key and what was expected."""
