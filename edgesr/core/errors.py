"""User-facing errors.

Every error a user can cause (a missing file, a corrupt image, an unknown model, an
unsupported scale, ...) is raised as :class:`EdgesrError`. The CLI prints its message on
one line and exits with status 2, without a traceback. Library code never uses ``assert``
to validate arguments.
"""


class EdgesrError(Exception):
    """A problem with the user's input (file, value or option); the message names it."""


def check(condition: bool, message: str) -> None:
    """Raise :class:`EdgesrError` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise EdgesrError(message)
