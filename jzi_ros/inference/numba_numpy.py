# Copyright 2026 jzi_ros contributors
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""
numpy's own algorithms compiled with Numba, so compiled kernels reproduce numpy bit for bit.

Two things a compiled filter step must do exactly as numpy does for its results to be the
numpy path's (:mod:`jzi_ros.inference.fusion_kernel`): sum as ``np.add.reduce`` does (pairwise,
blocks of 128 unrolled by 8), and draw from a ``np.random.Generator`` as its ``integers`` and
``random`` do (the BitGenerator's C functions through their addresses, Lemire's bounded
integers on top), so the generator's stream moves exactly as it would in numpy. They copy
numpy internals: a numpy that changed them would make the streams differ, and the kernel's
equivalence tests (test/test_fusion_kernel.py) would say so.

Also :func:`jit`, the one decorator: Numba's on-disk cache, or no cache (one warning) where no
place is writable.
"""
from __future__ import annotations

import ctypes
import warnings

from llvmlite import ir
import numba
from numba.core import cgutils
from numba.extending import intrinsic
import numpy as np

_CACHE_WARNED: list = []


def jit(function):
    """
    Compile lazily with Numba's on-disk cache; without a writable cache place, without it.

    ``error_model="numpy"``: a float division by zero gives inf/nan as in numpy instead of
    raising (the kernels never divide by zero), so divisions and square roots carry no
    branch and loops over particles vectorise (the results are the same: correctly rounded).
    """
    try:
        return numba.njit(cache=True, nogil=True, error_model="numpy")(function)
    except RuntimeError as err:  # "cannot cache function ...: no locator available"
        if not _CACHE_WARNED:
            _CACHE_WARNED.append(True)
            warnings.warn(f"numba cannot cache the filter kernels ({err}); they are compiled "
                          f"at every start instead", RuntimeWarning, stacklevel=2)
        return numba.njit(nogil=True, error_model="numpy")(function)


@jit
def _block_sum(a: np.ndarray, lo: int, n: int) -> float:
    """Sum ``a[lo:lo + n]``, ``n <= 128``, as numpy's pairwise summation does its blocks."""
    if n < 8:
        res = 0.0
        for i in range(n):
            res += a[lo + i]
        return res
    r0, r1, r2, r3 = a[lo], a[lo + 1], a[lo + 2], a[lo + 3]
    r4, r5, r6, r7 = a[lo + 4], a[lo + 5], a[lo + 6], a[lo + 7]
    i = 8
    while i < n - n % 8:
        r0 += a[lo + i]
        r1 += a[lo + i + 1]
        r2 += a[lo + i + 2]
        r3 += a[lo + i + 3]
        r4 += a[lo + i + 4]
        r5 += a[lo + i + 5]
        r6 += a[lo + i + 6]
        r7 += a[lo + i + 7]
        i += 8
    res = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    while i < n:
        res += a[lo + i]
        i += 1
    return res


@jit
def pairwise_sum(a: np.ndarray) -> float:
    """
    Sum ``a`` as numpy's ``add.reduce`` does: halves (multiples of 8) down to blocks of 128.

    Its recursion unrolled on a small stack (Numba's cache does not load recursive functions).
    """
    if a.shape[0] <= 128:
        return _block_sum(a, 0, a.shape[0])
    starts, counts = np.empty(64, np.int64), np.empty(64, np.int64)
    phases, lefts = np.zeros(64, np.int64), np.empty(64)
    top, result = 0, 0.0
    starts[0], counts[0], phases[0] = 0, a.shape[0], 0
    while top >= 0:
        lo, n = starts[top], counts[top]
        half = n // 2
        half -= half % 8
        if n <= 128:  # a leaf: its sum is returned to the frame below
            result = _block_sum(a, lo, n)
            top -= 1
        elif phases[top] == 0:  # the left half first
            phases[top] = 1
            top += 1
            starts[top], counts[top], phases[top] = lo, half, 0
        elif phases[top] == 1:  # then the right half
            lefts[top], phases[top] = result, 2
            top += 1
            starts[top], counts[top], phases[top] = lo + half, n - half, 0
        else:
            result = lefts[top] + result
            top -= 1
    return result


@intrinsic
def _next_uint32(typingctx, function, state):
    """Call a numpy BitGenerator's ``next_uint32`` (C function address) on its state address."""
    def codegen(context, builder, signature, args):
        kind = ir.FunctionType(ir.IntType(32), [cgutils.voidptr_t])
        call = builder.inttoptr(args[0], kind.as_pointer())
        return builder.call(call, [builder.inttoptr(args[1], cgutils.voidptr_t)])
    return numba.types.uint32(function, state), codegen


@intrinsic
def next_double(typingctx, function, state):
    """Call a numpy BitGenerator's ``next_double`` (C function address) on its state address."""
    def codegen(context, builder, signature, args):
        kind = ir.FunctionType(ir.DoubleType(), [cgutils.voidptr_t])
        call = builder.inttoptr(args[0], kind.as_pointer())
        return builder.call(call, [builder.inttoptr(args[1], cgutils.voidptr_t)])
    return numba.types.float64(function, state), codegen


@jit
def integers(generator: np.ndarray, high: int) -> int:
    """
    Draw from [0, high) as numpy's ``Generator.integers`` does: the same draws, the same value.

    For ``high <= 2**32 - 1``: numpy's ``random_bounded_uint64_fill`` for a 32-bit range,
    Lemire's multiply-and-reject on ``next_uint32`` (no draw when ``high`` is 1).
    ``generator``: :func:`generator_handle`.
    """
    span = high - 1
    if span == 0:
        return 0
    excl = np.uint64(span) + np.uint64(1)
    m = np.uint64(_next_uint32(generator[0], generator[2])) * excl
    leftover = m & np.uint64(0xFFFFFFFF)
    if leftover < excl:
        threshold = (np.uint64(0xFFFFFFFF) - np.uint64(span)) % excl
        while leftover < threshold:
            m = np.uint64(_next_uint32(generator[0], generator[2])) * excl
            leftover = m & np.uint64(0xFFFFFFFF)
    return np.int64(m >> np.uint64(32))


def generator_handle(generator: np.random.Generator) -> np.ndarray:
    """
    Return ``[next_uint32, next_double, state]`` addresses of a numpy Generator's BitGenerator.

    The kernels draw through them, so the generator's stream moves exactly as numpy's own
    ``integers`` and ``random`` calls would move it. Valid while ``generator`` lives.
    """
    interface = generator.bit_generator.ctypes
    return np.array([ctypes.cast(interface.next_uint32, ctypes.c_void_p).value,
                     ctypes.cast(interface.next_double, ctypes.c_void_p).value,
                     interface.state_address], np.int64)
