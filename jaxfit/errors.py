"""The errors and warnings jaxfit raises for its users' input.

`UserError` is every input mistake (a bad config field, dataset, spec file, option or path): its
message is one line naming the value and the remedy, and the command line prints just that line and
exits 2. It subclasses `ValueError`, so code that caught ValueError keeps working. Anything else that
escapes jaxfit is a bug (ours or a library's) and keeps its traceback.

`JaxfitWarning` marks input that is legal but likely a mistake (a memory budget below one config,
ranking by a validation metric on data without a validation split).
"""

from __future__ import annotations


class UserError(ValueError):
    """An input mistake, reported in one line that names the value and the remedy."""


class ConfigIndexError(UserError, IndexError):
    """A config index outside a result (an IndexError too, as a list's would be)."""


class JaxfitWarning(UserWarning):
    """Legal input that is probably not what was meant; the message says what jaxfit did instead."""


def warn(message: str, stacklevel: int = 3) -> None:
    """Issue a JaxfitWarning pointing at the caller's caller (the user's line)."""
    import warnings

    warnings.warn(message, JaxfitWarning, stacklevel=stacklevel)
