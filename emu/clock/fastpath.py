"""The clock's hot path, written in LLVM IR: Unicorn calls it at every translation block.

In the common case (the same block as last time, no stop due, no interrupt pending, nothing
armed due) it counts the block with three stores and returns; everything else it hands to the
full hook (``kernels.block_hook``) with a tail call. Written in IR rather than numba
because the shape matters at this rate: numba's C callbacks call their body as a separate
function and any call in it makes the body save registers on every block, which cost about 15 %
on code with long blocks (measured), and a fourth store costs as much again. The tail call
keeps this function free of both.

The layout constants come from ``clock/layout.py``; the IR is regenerated from them, and the
compiled object code is cached by ``native.load_ir`` under a hash of the text.
"""

from __future__ import annotations

from ..core import native
from . import layout as K

NAME = "triplefault_clock_fast_hook"


def ir_text() -> str:
    def slot(name: str, index: int) -> str:
        return f"  %p_{name} = getelementptr i64, i64* %ctx, i64 {index}\n"

    slots = {
        "enabled": K.CTX_ENABLED, "irq": K.CTX_IRQ_PENDING, "env": K.CTX_ENV,
        "cpc": K.CTX_CACHE_PC, "cwant": K.CTX_CACHE_WANT, "ccount": K.CTX_CACHE_COUNT,
        "icount": K.CTX_ICOUNT, "deadline": K.CTX_DEADLINE, "armed": K.CTX_ARMED,
        "armtime": K.CTX_ARM_TIME, "limit": K.CTX_LIMIT, "lastpc": K.CTX_LAST_PC,
        "lastinfo": K.CTX_LAST_INFO, "full": K.CTX_BLOCK_FN,
    }  # fmt: skip
    geps = "".join(slot(n, i) for n, i in slots.items())
    return f"""
define void @{NAME}(i8* %uc, i64 %address, i32 %size, i8* %data) {{
entry:
  %ctx = bitcast i8* %data to i64*
{geps}
  %enabled = load i64, i64* %p_enabled
  %irq = load i64, i64* %p_irq
  %off = icmp eq i64 %enabled, 0
  %pending = icmp ne i64 %irq, 0
  %busy = or i1 %off, %pending
  br i1 %busy, label %full, label %check

check:
  %env = load i64, i64* %p_env
  %hf_addr = add i64 %env, {K._ENV_HFLAGS}
  %hf_ptr = inttoptr i64 %hf_addr to i32*
  %hflags = load i32, i32* %hf_ptr
  %cs64 = and i32 %hflags, {K._HF_CS64}
  %is64 = icmp ne i32 %cs64, 0
  %cs32 = and i32 %hflags, {K._HF_CS32}
  %is32 = icmp ne i32 %cs32, 0
  %bits_low = select i1 %is32, i64 32, i64 16
  %bits = select i1 %is64, i64 64, i64 %bits_low
  %size64 = zext i32 %size to i64
  %size16 = and i64 %size64, 65535
  %bits_hi = shl i64 %bits, 16
  %want = or i64 %size16, %bits_hi
  %cpc = load i64, i64* %p_cpc
  %cwant = load i64, i64* %p_cwant
  %count = load i64, i64* %p_ccount
  %icount = load i64, i64* %p_icount
  %deadline = load i64, i64* %p_deadline
  %armed = load i64, i64* %p_armed
  %armtime = load i64, i64* %p_armtime
  %limit = load i64, i64* %p_limit
  %same_pc = icmp eq i64 %address, %cpc
  %same_want = icmp eq i64 %want, %cwant
  %new = add i64 %icount, %count
  %before_deadline = icmp ule i64 %new, %deadline
  %not_armed = icmp eq i64 %armed, 0
  %before_arm = icmp ule i64 %new, %armtime
  %arm_ok = or i1 %not_armed, %before_arm
  %in_limit = icmp ule i64 %new, %limit
  %ok1 = and i1 %same_pc, %same_want
  %ok2 = and i1 %ok1, %before_deadline
  %ok3 = and i1 %ok2, %arm_ok
  %ok = and i1 %ok3, %in_limit
  br i1 %ok, label %count_it, label %full

count_it:
  store i64 %address, i64* %p_lastpc
  %count_hi = shl i64 %count, {K.INFO_COUNT_SHIFT}
  %info = or i64 %want, %count_hi
  store i64 %info, i64* %p_lastinfo
  store i64 %new, i64* %p_icount
  ret void

full:
  %fn_addr = load i64, i64* %p_full
  %fn = inttoptr i64 %fn_addr to void (i8*, i64, i32, i8*)*
  musttail call void %fn(i8* %uc, i64 %address, i32 %size, i8* %data)
  ret void
}}
"""


def load() -> native.NativeFunction:
    return native.load_ir(NAME, ir_text())
