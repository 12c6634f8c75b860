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


class InternalError(Exception):
    """A bug in Triplefault, not in the guest or the input: an exception raised inside one of
    the CPU core's hooks, kept and raised again when the engine returns (never lost inside
    Unicorn). The machine's state is as the hook left it. The CLI prints one line and exits
    with EXIT_INTERNAL (70, EX_SOFTWARE); ``-v`` adds the traceback."""

    def __init__(self, where: str, error: BaseException) -> None:
        super().__init__(f"internal error in {where}: {type(error).__name__}: {error}")
        self.where = where
        self.error = error
