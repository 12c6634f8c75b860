"""Low-level numba intrinsics the compiled hooks share: raw pointers and loads.

numba reaches memory through arrays; Unicorn's hooks get raw addresses (guest RAM, QEMU's env)
only at run time. These turn an integer into a pointer, load through it, or call a C function
through it, without building an array or embedding a per-process constant (so the compiled
code can be cached).
"""

from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.extending import intrinsic


@intrinsic
def voidptr(typingctx, addr):
    """uint64 -> void*: reach memory whose address is only known at run time."""
    sig = types.voidptr(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.IntType(8).as_pointer())

    return sig, codegen


@intrinsic
def call_ptr(typingctx, fnptr, arg):
    """Call ``int f(void*)`` through a function pointer held as uint64."""
    sig = types.int32(types.uint64, types.voidptr)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(ir.IntType(32), [ir.IntType(8).as_pointer()])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [args[1]])

    return sig, codegen


@intrinsic
def call_ctl(typingctx, fnptr, uc, control):
    """Call ``uc_ctl(uc, control)`` (``int f(void *, int, ...)``, with no further arguments)
    through a function pointer held as uint64: called as variadic, as its ABI wants."""
    sig = types.int32(types.uint64, types.voidptr, types.int32)

    def codegen(context, builder, signature, args):
        fnty = ir.FunctionType(
            ir.IntType(32), [ir.IntType(8).as_pointer(), ir.IntType(32)], var_arg=True
        )
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [args[1], args[2]])

    return sig, codegen


@intrinsic
def load64(typingctx, addr):
    """*(uint64_t *)addr: a plain load, no array built around it."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        return builder.load(ptr)

    return sig, codegen


@intrinsic
def load32(typingctx, addr):
    sig = types.uint32(types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        return builder.load(ptr)

    return sig, codegen


@intrinsic
def load16(typingctx, addr):
    """*(uint16_t *)addr, widened to uint64."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(16).as_pointer())
        return builder.zext(builder.load(ptr), ir.IntType(64))

    return sig, codegen


@intrinsic
def store64(typingctx, addr, value):
    """*(uint64_t *)addr = value."""
    sig = types.void(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(64).as_pointer())
        builder.store(args[1], ptr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def store32(typingctx, addr, value):
    """*(uint32_t *)addr = value (the low 32 bits)."""
    sig = types.void(types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        ptr = builder.inttoptr(args[0], ir.IntType(32).as_pointer())
        builder.store(builder.trunc(args[1], ir.IntType(32)), ptr)
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def call_cc_compute(typingctx, fnptr, env, op):
    """Call ``uint32_t cpu_cc_compute_all(CPUX86State *env, int op)`` through a pointer."""
    sig = types.uint64(types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(i32, [ir.IntType(8).as_pointer(), i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        ptr = builder.inttoptr(args[1], ir.IntType(8).as_pointer())
        result = builder.call(fn, [ptr, builder.trunc(args[2], i32)])
        return builder.zext(result, ir.IntType(64))

    return sig, codegen


@intrinsic
def call_out(typingctx, fnptr, port, size, value):
    """Call ``void f(uint32_t port, int32_t size, uint32_t value)`` through a pointer."""
    sig = types.void(types.uint64, types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [builder.trunc(a, i32) for a in args[1:]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def call_mmio_write(typingctx, fnptr, offset, size, value):
    """Call ``void f(uint64_t offset, uint32_t size, uint64_t value)`` through a pointer."""
    sig = types.void(types.uint64, types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i32, i64 = ir.IntType(32), ir.IntType(64)
        fnty = ir.FunctionType(ir.VoidType(), [i64, i32, i64])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        builder.call(fn, [args[1], builder.trunc(args[2], i32), args[3]])
        return context.get_dummy_value()

    return sig, codegen


@intrinsic
def call_ptr2(typingctx, fnptr, a, b):
    """Call ``uint64_t f(void *, void *)`` through a function pointer held as uint64."""
    sig = types.uint64(types.uint64, types.voidptr, types.voidptr)

    def codegen(context, builder, signature, args):
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.IntType(64), [ptr, ptr])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [args[1], args[2]])

    return sig, codegen


@intrinsic
def call_in(typingctx, fnptr, port, size):
    """Call ``uint32_t f(uint32_t port, int32_t size)`` through a pointer."""
    sig = types.uint32(types.uint64, types.uint64, types.uint64)

    def codegen(context, builder, signature, args):
        i32 = ir.IntType(32)
        fnty = ir.FunctionType(i32, [i32, i32])
        fn = builder.inttoptr(args[0], fnty.as_pointer())
        return builder.call(fn, [builder.trunc(a, i32) for a in args[1:]])

    return sig, codegen
