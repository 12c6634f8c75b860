"""The version, and the boot loader name the guest reads from the boot information."""

__version__ = "0.1.0"
LOADER_NAME = f"Triplefault {__version__}"
