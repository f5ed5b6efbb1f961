"""A plugin whose import fails, as one with a missing dependency would."""

import mclease_no_such_dependency  # noqa: F401
