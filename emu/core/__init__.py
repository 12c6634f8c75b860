"""The CPU core: one Unicorn x86-64 engine and what it takes to run it as a PC's CPU.

- ``engine.py``: ``UnicornCore``, the engine behind a narrow class: slices up to a virtual-time
  deadline, exact instruction counts per translation block, single steps, side-effect-free
  reads of registers and memory.
- ``instructions.py``: what this CPU does on the instructions Unicorn hands to us (CPUID,
  RDTSC/RDTSCP, SYSCALL, SYSENTER, IN/OUT).
- ``cpu_state.py``: ``CpuState``, the registers and mode as data.
- ``internals.py``: Unicorn 2.1.4's engine structures (``CPUX86State`` and the uc struct),
  located and checked at start-up; ``x86_layout.py``: their offsets and the architectural bits.
- ``native.py``: compiled hooks without numba's start-up cost (numba compiles once, llvmlite
  loads the cached machine code); ``intrinsics.py``: the raw loads, stores and calls those
  hooks inline.
"""
