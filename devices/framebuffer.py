"""A linear RGB framebuffer, as a Multiboot2 kernel gets it for a framebuffer header tag.

The pixels are plain memory mapped at the address the boot information gives (above RAM);
the guest draws with ordinary stores and the renderer reads the buffer: no hooks, no registers.
Pixel layout per the framebuffer info tag: 32 or 24 bits, red at bit 16, green 8, blue 0.
"""

from __future__ import annotations

import numpy as np


class LinearFramebuffer:
    def __init__(self, mode) -> None:
        """``mode``: a firmware.Framebuffer (address, width, height, bpp, pitch)."""
        self.mode = mode
        size = (mode.pitch * mode.height + 0xFFF) & ~0xFFF
        self.memory = np.zeros(size, np.uint8)

    def reset(self) -> None:
        self.memory[:] = 0

    def rgb(self) -> np.ndarray:
        """height x width x 3 array of 8-bit RGB."""
        m = self.mode
        bytes_pp = m.bpp // 8
        rows = self.memory[: m.pitch * m.height].reshape(m.height, m.pitch)
        px = rows[:, : m.width * bytes_pp].reshape(m.height, m.width, bytes_pp)
        return np.ascontiguousarray(px[:, :, 2::-1])  # stored B, G, R(, X)

    def image(self):
        from PIL import Image

        return Image.fromarray(self.rgb(), "RGB")

    def png(self, path) -> None:
        self.image().save(path, format="PNG")
