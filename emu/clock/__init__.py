"""Virtual time: one retired instruction is one nanosecond at the nominal clock rate
(``DEFAULT_CPU_MHZ``; ``Machine(cpu_mhz=N)`` makes it 1000/N ns), counted per translation block.

- ``kernels.py``: the compiled block hook that counts instructions and stops a slice at the
  next device deadline, the OUT hook that takes a timer's plain EOI, and the armed timer
  delivery; ``fastpath.py``: the block hook's hot path in LLVM IR, in front of it.
- ``layout.py``: the context array those hooks and Python share.
- ``scheduler.py``: the ``Scheduler``: device deadlines, HLT skipping to the next event, and
  arming the clock hook to deliver timer interrupts without stopping.
"""

DEFAULT_CPU_MHZ = 1000  # one instruction per nanosecond
MAX_CPU_MHZ = 1_000_000
