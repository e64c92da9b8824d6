"""User-facing errors.

Anything a user can cause (a bad config value, a missing folder, a corrupt image, missing
weights) raises `SrlabError` with a one-line message that says what is wrong and how to fix
it. The entry points catch it and print that line instead of a traceback.
"""


class SrlabError(Exception):
    """An error the user can fix; its message is printed alone, on one line."""
