"""The one base class for errors caused by input or parameters rather than by the code.

Stages print such an error as one message and exit 1; anything else is a bug and keeps
its traceback.
"""


class UserError(Exception):
    pass
