"""The version, and the boot loader name the guest reads from the boot information."""

__version__ = "0.1.0"
# GRUB's own string (firmware.grub.LOADER_NAME), since kernels branch on it; a caller of
# firmware.boot_kernel chooses another with loader_name=.
LOADER_NAME = "GRUB 2.06-13+deb12u2"
