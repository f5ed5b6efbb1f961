"""mclease-example: TODO one line on the store this backend keeps leases in.

The design note is in :mod:`mclease_example._storage`; the README lists the URL options, the
capabilities and the caveats.
"""

from ._storage import ExampleStorage

__all__ = ["ExampleStorage"]
