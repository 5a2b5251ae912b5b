"""fp32 linear layers through oneDNN on CPUs where torch's default BLAS leaves half the machine idle.

On x86 torch multiplies fp32 matrices with MKL's sgemm. On AMD CPUs MKL runs a generic code path
(its verbose line reads "Intel(R) Architecture processors"; AVX2 at best), so on an AVX-512 Zen
core `torch.mm` reaches about half of what the core does. oneDNN, which torch ships too, picks its
kernels from the ISA alone. On these 2 cores (AMD EPYC, AVX-512) MiniLM's shapes ran at 190–200
GFLOP/s through MKL and 360–440 through oneDNN, in the same fp32 arithmetic (no bf16 or tf32
down-conversion: the error against a float64 product is that of an fp32 sum). On Intel CPUs MKL is
as fast, and nothing changes.

`faster_linear()` measures both on a MiniLM-sized product once per process and thread count
(~0.2 s) and, where oneDNN wins by `_MARGIN`, routes every fp32 CPU `F.linear` inside the context
through `onednn_linear`: the forward by `mkldnn::_linear_pointwise`, and the backward's two
products (dX = dY·W and dW = dYᵀ·X) the same way. It yields which one it uses; the trainer
records it with the run's figures. Autocast regions (bf16), other dtypes and GPU tensors keep
torch's own path. PREFLOOP_GEMM=onednn or =default decides without measuring.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

ONEDNN, DEFAULT = "onednn", "default"
_MARGIN = 1.2  # oneDNN is used only when at least this much faster than the default on this machine
_CHOICE: dict[int, str] = {}  # per torch thread count: the measured choice of this process


def available() -> bool:
    return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_linear_pointwise")


def _product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """x · weightᵀ [+ bias] through oneDNN   # (M, K) x (N, K) -> (M, N); x is made contiguous, weight may be any view"""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


class _OneDnnLinear(torch.autograd.Function):
    """y = x Wᵀ + b with all three products in oneDNN   # (M, K), (N, K), (N,) -> (M, N)"""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        return _product(x, weight, bias)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[0]:
            grad_x = _product(grad, weight.t())  # (M, N) · (N, K)
        if ctx.needs_input_grad[1]:
            # dW = dYᵀ·X sums over the M rows; oneDNN wants its left operand row-major, so the
            # narrower of dY and X is the one transposed into a copy.
            if grad.shape[1] <= x.shape[1]:
                grad_weight = _product(grad.t(), x.t())  # (N, M) · (M, K)
            else:
                grad_weight = _product(x.t(), grad.t()).t().contiguous()  # (K, M) · (M, N), then (N, K)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_bias = grad.sum(0)
        return grad_x, grad_weight, grad_bias


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """F.linear through oneDNN, forward and backward   # (..., K) x (N, K) [, (N,)] -> (..., N)"""
    if x.dim() == 2:
        return _OneDnnLinear.apply(x, weight, bias)
    rows = x.reshape(-1, x.shape[-1])
    return _OneDnnLinear.apply(rows, weight, bias).view(*x.shape[:-1], weight.shape[0])


def _eligible(x: Any, weight: Any, bias: Any) -> bool:
    tensors = (x, weight) if bias is None else (x, weight, bias)
    return (
        all(isinstance(t, torch.Tensor) and t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)
        and weight.dim() == 2
        and x.dim() >= 1
        and x.shape[-1] == weight.shape[1]
        and x.numel() > 0
        and weight.numel() > 0
        and not torch.is_autocast_enabled("cpu")
    )


class _OneDnnLinearMode(TorchFunctionMode):
    """Every eligible F.linear (fp32, CPU, outside autocast) inside the mode → onednn_linear."""

    def __torch_function__(self, func: Any, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        if func is F.linear:
            x, weight = args[0], args[1] if len(args) > 1 else kwargs["weight"]
            bias = args[2] if len(args) > 2 else kwargs.get("bias")
            if _eligible(x, weight, bias):
                return onednn_linear(x, weight, bias)
        return func(*args, **kwargs)


def _best_seconds(fn: Any, repeats: int = 5) -> float:
    fn()
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def measure() -> tuple[float, float]:
    """(default seconds, oneDNN seconds) of one MiniLM feed-forward product at this thread count."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2048, 384, generator=generator)
    weight = torch.randn(1536, 384, generator=generator)
    return _best_seconds(lambda: F.linear(x, weight)), _best_seconds(lambda: _product(x, weight))


def choose() -> str:
    """ONEDNN or DEFAULT for this process: PREFLOOP_GEMM if set, else measured once per thread count."""
    forced = os.environ.get("PREFLOOP_GEMM", "auto").strip().lower()
    if forced not in ("auto", ONEDNN, DEFAULT):
        raise ValueError(f"PREFLOOP_GEMM: expected auto, {ONEDNN} or {DEFAULT}, got {forced!r}")
    if forced == DEFAULT or not available():
        return DEFAULT
    if forced == ONEDNN:
        return ONEDNN
    threads = torch.get_num_threads()
    if threads not in _CHOICE:
        default, onednn = measure()
        _CHOICE[threads] = ONEDNN if default >= _MARGIN * onednn else DEFAULT
    return _CHOICE[threads]


@contextmanager
def faster_linear(backend: str | None = None) -> Iterator[str]:
    """fp32 CPU linear layers through the faster of torch's default and oneDNN; yields the one used."""
    backend = backend or choose()
    if backend == DEFAULT:
        yield DEFAULT
        return
    if backend != ONEDNN:
        raise ValueError(f"backend: expected {ONEDNN} or {DEFAULT}, got {backend!r}")
    with _OneDnnLinearMode():
        yield ONEDNN


__all__ = ["DEFAULT", "ONEDNN", "available", "choose", "faster_linear", "measure", "onednn_linear"]
