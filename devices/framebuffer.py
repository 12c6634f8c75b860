"""The linear framebuffer of QEMU's standard VGA, in the graphics mode the boot loader set.

The video memory (16 MiB, QEMU's default) is plain memory mapped at the framebuffer address
(0xFD000000, above RAM); the guest draws with ordinary stores and the renderer reads the buffer:
no hooks, no registers. The picture is what QEMU's display (and its ``screendump``) shows for
the mode, measured pixel for pixel with images/video:

- 32 and 24 bpp: the bytes of each component as they are (blue lowest).
- 16 bpp (5:6:5): each component widened with its top bits repeated (5 bits v -> v<<3 | v>>2).
- 15 bpp (5:5:5): each component shifted left by 3, the low bits zero.
- 8 bpp (packed pixel): the index through the VGA DAC, whose 6-bit entries become 8 bits as
  QEMU's do (v<<2, and bit 0 copied into bits 1 and 0).
"""

from __future__ import annotations

import numpy as np

VIDEO_MEMORY = 16 * 1024 * 1024


class LinearFramebuffer:
    def __init__(self, mode, video_memory: int = VIDEO_MEMORY) -> None:
        """``mode``: width, height, bpp, pitch, ``indexed`` and ``layout`` (red/green/blue
        ``_pos`` and ``_size``), as firmware.Framebuffer describes the mode set."""
        self.mode = mode
        size = max(video_memory, (mode.pitch * mode.height + 0xFFF) & ~0xFFF)
        self.memory = np.zeros(size, np.uint8)

    def reset(self) -> None:
        self.memory[:] = 0

    def _pixels(self) -> np.ndarray:
        """height x width array of the pixel values (little-endian, 1 to 4 bytes each)."""
        m = self.mode
        bytes_pp = (m.bpp + 7) // 8
        rows = self.memory[: m.pitch * m.height].reshape(m.height, m.pitch)
        px = rows[:, : m.width * bytes_pp].reshape(m.height, m.width, bytes_pp).astype(np.uint32)
        value = np.zeros((m.height, m.width), np.uint32)
        for i in range(bytes_pp):
            value |= px[:, :, i] << (8 * i)
        return value

    def rgb(self, dac: list | None = None) -> np.ndarray:
        """height x width x 3 array of 8-bit RGB. ``dac``: the 256 6-bit (r, g, b) entries of
        the VGA DAC, which an indexed mode is shown through."""
        m = self.mode
        value = self._pixels()
        if m.indexed:
            if dac is None:
                raise ValueError("an indexed framebuffer is shown through the DAC: pass dac")
            table = np.array(dac, np.uint32) & 0x3F
            table = (table << 2) | ((table & 1) << 1) | (table & 1)
            return np.ascontiguousarray(table[value & 0xFF].astype(np.uint8))
        layout = m.layout
        out = np.empty((m.height, m.width, 3), np.uint8)
        fields = (
            (layout.red_pos, layout.red_size),
            (layout.green_pos, layout.green_size),
            (layout.blue_pos, layout.blue_size),
        )
        for i, (pos, size) in enumerate(fields):
            v = (value >> pos) & ((1 << size) - 1)
            if size < 8:
                v = v << (8 - size)
                if m.bpp == 16:  # QEMU hands 5:6:5 to its display as is, which widens it
                    v |= v >> size
            out[:, :, i] = v
        return out

    def image(self, dac: list | None = None):
        from PIL import Image

        return Image.fromarray(self.rgb(dac), "RGB")

    def png(self, path, dac: list | None = None) -> None:
        self.image(dac).save(path, format="PNG")
