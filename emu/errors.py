"""One error hierarchy for everything the emulator reports to a user.

The CLI turns any ``EmuError`` into a single line on stderr and exit status 2; anything
else escaping is a bug in Triplefault, not in the guest.
"""


class EmuError(Exception):
    """Base class: a problem the user can act on, described in one line."""


class ConfigError(EmuError):
    """Bad flags or arguments (memory size, port overlap, unknown option value)."""


class LoaderError(EmuError):
    """The kernel file or a module cannot be booted (malformed ELF, Multiboot header...)."""


class SnapshotError(EmuError):
    """A checkpoint or device state does not satisfy its invariants."""


class EngineError(EmuError):
    """The installed CPU engine is not the one the design was verified against."""
