"""Exceptions and interrupts: what the CPU does when something goes wrong, and the story told
afterwards.

- ``delivery.py``: the model of IDT delivery after the Intel SDM (gate checks, privilege and
  stack switches, IST, error codes, #DF and the triple fault), each step with a reason.
- ``kernels.py``: its compiled twin for the common long-mode cases (``layout.py``: the arrays
  both sides share); anything it declines goes to the model, which the tests use as the oracle.
- ``raising.py``: how the engine's reports (an exception, a software interrupt, an invalid
  opcode, an external interrupt) reach the model or the compiled path.
- ``trace.py``: the ``FaultTrace``, every delivery and escalation as it happened;
  ``recorder.py`` turns deliveries into its entries.
- ``diagnosis.py``: what a fault chain most likely means (mode mismatch, no IDT, bad gate
  selector, stack overflow, ...).
"""
