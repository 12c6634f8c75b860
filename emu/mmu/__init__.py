"""The MMU: x86 paging as the CPU does it, and as a teacher or a debugger explains it.

Read in this order:

- ``reference.py``: the readable walker, written from the Intel SDM (Vol. 3, 4.1-4.8) for
  clarity only. It is the oracle every test compares the compiled walker with.
- ``kernels.py``: the same walk compiled with numba: the TLB-fill hook Unicorn calls on every
  miss, one explained translation, and the whole-tree scan. ``layout.py`` holds the array
  layouts both sides share.
- ``pagewalk.py``: ``walk()``, one translation explained level by level (``PageWalk``).
- ``tree.py``: the whole tree as merged ranges and the reports built on it.
- ``tlb_fill.py``: the hook installed on an engine of one's own.
- ``view.py``: rich renderings of walks, ranges and trees (the CLI and the debugger).
"""

from .pagewalk import (
    ACCESS,
    ACCESS_WORDS,
    PageWalk,
    PagingMode,
    WalkLevel,
    _translate,  # noqa: F401 - the raw kernel call, for the property tests
    _warned,  # noqa: F401 - the set of one-time warnings, for the tests
    paging_mode,
    translate_raw,
    walk,
)
from .tlb_fill import RefusedFill, TlbFillHook, install_tlb_fill
from .tree import (
    Mapping,
    MappingDiff,
    diff_mappings,
    find_user,
    find_user_kernel,
    find_wx,
    mappings,
    reverse_lookup,
)

__all__ = [
    "ACCESS",
    "ACCESS_WORDS",
    "Mapping",
    "MappingDiff",
    "PageWalk",
    "PagingMode",
    "RefusedFill",
    "TlbFillHook",
    "WalkLevel",
    "diff_mappings",
    "find_user",
    "find_user_kernel",
    "find_wx",
    "install_tlb_fill",
    "mappings",
    "paging_mode",
    "reverse_lookup",
    "translate_raw",
    "walk",
]
