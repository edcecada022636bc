"""Property-based tests (hypothesis) of every public function that takes tensors.

Each test draws shapes, dtypes (float16/bfloat16/float32/float64, integers, mixed between the
inputs), lengths (0, full, in between, out of range), layouts (contiguous, transposed, sliced,
expanded, lists, single clouds), degenerate geometry (duplicates, collapsed clouds, collinear
points, repeated-vertex and collinear triangles), scales from 1e-8 to 1e8, NaN/Inf in valid points
and in the padding past the lengths, bad face indices, K from 1 to huge, and requires_grad on/off.

Every call must end in one of two ways:

(a) a clean ValueError or TypeError whose message names one of the function's arguments (and
    inputs that are certainly invalid, such as NaN among the valid points, must end this way), or
(b) a result that is finite wherever the README promises it (NaN only for empty clouds of the
    metrics, together with a RuntimeWarning), that matches a float64 oracle (pointmetrics.reference
    or the formula written out here) at a tolerance suited to the dtype, and whose backward pass,
    when gradients were requested, gives finite gradients that are zero on the padding.

Any other exception (RuntimeError, IndexError, ...) fails, and so does a call that does not
return within CALL_TIMEOUT seconds (calls run on a watchdog thread; the search ops release the GIL).

The per-test example budget is EXAMPLES (override with POINTMETRICS_PROPERTY_EXAMPLES); the
default keeps the whole module well under a minute on the 2-core CI machine.
"""

from __future__ import annotations

import copy
import math
import os
import re
import threading
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, Phase, given, note, settings
from hypothesis import strategies as st

import pointmetrics as pm
from pointmetrics import reference as ref
from pointmetrics.mesh import face_cross

EXAMPLES = int(os.environ.get("POINTMETRICS_PROPERTY_EXAMPLES", "40"))  # examples per test
CALL_TIMEOUT = 30.0  # seconds one library call may take before it counts as a hang
MEMORY_HEADROOM = 6 << 30  # bytes of address space one call may add (a runaway allocation fails, not the machine)

SETTINGS = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=False,
    database=None,  # nothing written into the checkout
    suppress_health_check=list(HealthCheck),
    print_blob=True,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],  # no slow "explain"
)

FLOATS = (torch.float16, torch.bfloat16, torch.float32, torch.float64)
INTS = (torch.int64, torch.int32, torch.int16, torch.uint8)
# Relative tolerance of a result computed from inputs of this dtype, against float64 on the same
# (already rounded) input values.
TOL = {torch.float16: 1e-2, torch.bfloat16: 2e-2, torch.float32: 1e-4, torch.float64: 1e-9}
SCALES = (1e-8, 1e-4, 1e-2, 1.0, 1e2, 1e4, 1e8)


def tol_of(*dtypes) -> float:
    return max(TOL.get(d, 1e-9) for d in dtypes)


# ------------------------------------------------------------------------------------------------
# Calling the library


class Rejected(Exception):
    """The call raised a clean ValueError/TypeError naming an argument."""


@dataclass
class Outcome:
    value: object = None
    error: BaseException | None = None
    warnings: list = field(default_factory=list)

    def warned(self, category=RuntimeWarning) -> bool:
        return any(issubclass(w.category, category) for w in self.warnings)


def names_argument(message: str, names) -> bool:
    return any(re.search(rf"(?<![A-Za-z0-9_]){re.escape(n)}(?![A-Za-z0-9_])", message) for n in names)


def _limit_memory():
    """Caps the address space at its current size plus MEMORY_HEADROOM (Linux); the old limits."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        with open("/proc/self/statm") as f:
            used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        cap = used + MEMORY_HEADROOM
        if hard != resource.RLIM_INFINITY:
            cap = min(cap, hard)
        if soft == resource.RLIM_INFINITY or cap < soft:
            resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
            return soft, hard
    except (ImportError, OSError, ValueError):
        pass
    return None


def _restore_memory(limit):
    if limit is not None:
        import resource

        resource.setrlimit(resource.RLIMIT_AS, limit)


def guarded(fn, timeout: float = CALL_TIMEOUT):
    """fn() on a watchdog thread: (value, exception, warnings); AssertionError on a hang."""
    box: dict = {}

    def target():
        try:
            box["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - reported by the caller
            box["error"] = e

    limit = _limit_memory()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            thread.join(timeout)
    finally:
        _restore_memory(limit)
    if thread.is_alive():
        raise AssertionError(f"the call did not return within {timeout:.0f} s (hang)")
    return box.get("value"), box.get("error"), list(caught)


def call(fn, names, must_fail: str | None = None, may_fail: str | None = None) -> Outcome:
    """Runs fn() and applies the (a)/(b) rule.

    names: the function's argument names; a ValueError/TypeError must name one of them.
    must_fail: why the input is certainly invalid (then the call must raise such an error).
    may_fail: why the input may fairly be rejected (a clean error is accepted, a result is checked).
    Valid input (neither) must not be rejected.
    """
    value, error, caught = guarded(fn)
    note(f"call -> {type(error).__name__ + ': ' + str(error) if error is not None else 'result'}")
    if error is not None:
        if not isinstance(error, (ValueError, TypeError)):
            raise error  # RuntimeError, IndexError, ...: a failure, reported with its own traceback
        if not names_argument(str(error), names):
            raise AssertionError(
                f"{type(error).__name__} does not name an argument (one of {sorted(names)}): {error}"
            ) from error
        if must_fail is None and may_fail is None:
            raise AssertionError(f"valid input rejected: {type(error).__name__}: {error}") from error
        return Outcome(None, error, caught)
    if must_fail is not None:
        raise AssertionError(f"invalid input accepted without an error ({must_fail})")
    return Outcome(value, None, caught)


def backward_ok(output, inputs, pads=None, what="output"):
    """Backward of the sum of the finite entries of ``output`` (a tensor or a list of tensors):
    finite gradients for every input; zero gradients on ``pads`` (boolean masks over each input's
    leading dims) where given."""
    outs = output if isinstance(output, (list, tuple)) else [output]
    outs = [o for o in outs if isinstance(o, torch.Tensor) and o.requires_grad]
    inputs = [t for t in inputs if isinstance(t, torch.Tensor) and t.requires_grad]
    if not outs or not inputs:
        return
    total = sum(torch.where(torch.isfinite(o), o, torch.zeros((), dtype=o.dtype)).double().sum() for o in outs)

    grads, error, _ = guarded(lambda: torch.autograd.grad(total, inputs, allow_unused=True))
    if error is not None:
        raise error
    for k, g in enumerate(grads):
        if g is None:
            continue
        # A half-precision input may get an infinite gradient where the true one exceeds its range
        # (65504 for float16); NaN is never right.
        overflow_ok = g.dtype in (torch.float16, torch.bfloat16) and not torch.isnan(g).any()
        assert overflow_ok or torch.isfinite(g).all(), f"non-finite gradient for input {k} of {what}: {g}"
        if pads is not None and pads[k] is not None and pads[k].any():
            pad = pads[k]
            assert (g[pad] == 0).all(), f"gradient reaches the padding of input {k} of {what}"


def assert_close(actual, expected, tol, what, scale=None):
    """Elementwise |a - e| <= tol (|e| + S), S the largest finite |e| (or ``scale``); NaN and +-inf
    must coincide."""
    def as64(t):
        return (t if isinstance(t, torch.Tensor) else torch.as_tensor(t, dtype=torch.float64)).detach().double().cpu()

    resolution = 0.0  # the output dtype cannot resolve less than a few of its smallest subnormals
    if isinstance(actual, torch.Tensor) and actual.is_floating_point():
        resolution = 4 * torch.finfo(actual.dtype).smallest_normal * torch.finfo(actual.dtype).eps
    a, e = as64(actual), as64(expected)
    assert a.shape == e.shape, f"{what}: shape {tuple(a.shape)}, expected {tuple(e.shape)}"
    assert torch.equal(torch.isnan(a), torch.isnan(e)), f"{what}: NaN pattern differs:\n{a}\nexpected\n{e}"
    inf = torch.isinf(e)
    assert torch.equal(a[inf], e[inf]), f"{what}: infinities differ:\n{a}\nexpected\n{e}"
    fin = torch.isfinite(e)
    assert torch.isfinite(a[fin]).all(), f"{what}: non-finite where the oracle is finite:\n{a}\nexpected\n{e}"
    if not fin.any():
        return
    S = e[fin].abs().max() if scale is None else torch.tensor(float(scale), dtype=torch.float64)
    err = (a[fin] - e[fin]).abs()
    bound = tol * (e[fin].abs() + S) + resolution + 1e-300
    worst = int((err / bound).argmax())
    assert (err <= bound).all(), (
        f"{what}: off by {float(err[worst]):.3e} (allowed {float(bound[worst]):.3e}) at finite entry {worst}:"
        f"\n{a}\nexpected\n{e}"
    )


# ------------------------------------------------------------------------------------------------
# Point clouds


@dataclass
class Cloud:
    arg: object  # what is passed to the library: a (B, N, D) / (N, D) tensor or a list
    lengths_arg: object  # the lengths argument (None, a tensor, or a bad value)
    values: torch.Tensor  # (B, N, D) float64 copy of the passed values (padding included)
    lengths: list  # valid points per cloud
    dtype: torch.dtype
    grad_input: torch.Tensor | None  # the tensor to differentiate against (None: no grad)
    pad: torch.Tensor | None  # (B, N) mask of padding points of grad_input
    invalid: str | None  # why the cloud is certainly invalid
    questionable: str | None  # why it may be rejected
    form: str
    unbatched: bool


PATTERNS = ("uniform", "grid", "collapsed", "line", "duplicates")
LAYOUTS = ("contiguous", "transposed", "sliced", "expanded")
INJECT = ("none", "none", "none", "nan_valid", "inf_valid", "nan_padding", "inf_padding")


@st.composite
def cloud_specs(draw, B, D, max_n=40, float_only=False):
    """A valid cloud (padding may hold NaN/Inf); cloud_pairs adds at most one defect."""
    N = draw(st.one_of(st.sampled_from([0, 1, 2, max_n]), st.integers(0, max_n)))
    lengths = [draw(st.one_of(st.sampled_from([0, N]), st.integers(0, N))) for _ in range(B)]
    return dict(
        B=B,
        N=N,
        D=D,
        dtype=draw(st.sampled_from(FLOATS)),
        pattern=draw(st.sampled_from(PATTERNS)),
        scale=draw(st.sampled_from(SCALES)),
        layout=draw(st.sampled_from(LAYOUTS)),
        inject=draw(st.sampled_from(["none", "none", "none", "nan_padding", "inf_padding"])),
        lengths_kind=draw(st.sampled_from(["none", "none", "tensor", "tensor", "int32", "list"])),
        lengths=lengths,
        form=draw(st.sampled_from(["padded", "padded", "padded", "single", "list"])),
        grad=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


DEFECTS = ("integer_dtype", "bad_lengths", "float_lengths", "nan_valid", "inf_valid")


def with_defect(draw, spec, float_only=False):
    """One clean-error defect, now and then."""
    if draw(st.integers(0, 3)):
        return spec
    defect = draw(st.sampled_from(DEFECTS[1:] if float_only else DEFECTS))
    spec = dict(spec)
    if defect == "integer_dtype":
        spec["dtype"] = draw(st.sampled_from(INTS))
    elif defect == "bad_lengths":
        spec["lengths_kind"], spec["form"] = "bad", "padded"
    elif defect == "float_lengths":
        spec["lengths_kind"], spec["form"] = "float", "padded"
    else:
        spec["inject"] = defect
    return spec


def base_points(gen, B, N, D, pattern, scale):
    base = torch.rand(B, N, D, generator=gen, dtype=torch.float64) * 2 - 1
    if pattern == "grid":
        base = torch.round(base * 4) / 4
    elif pattern == "collapsed" and N:
        base = base[:, :1].expand(B, N, D).clone()
    elif pattern == "line":
        t = torch.rand(B, N, 1, generator=gen, dtype=torch.float64)
        base = t * (torch.rand(B, 1, D, generator=gen, dtype=torch.float64) * 2 - 1)
    elif pattern == "duplicates" and N:
        pick = torch.randint(0, max(N // 2, 1), (N,), generator=gen)
        base = base[:, pick]
    return base * scale


def make_cloud(spec, share: torch.Tensor | None = None) -> Cloud:
    """Builds the tensors of a cloud spec; ``share`` (float64 (B, M, D)) supplies points that the
    cloud copies (exact duplicates across the two clouds)."""
    gen = torch.Generator().manual_seed(spec["seed"])
    B, N, D, dtype = spec["B"], spec["N"], spec["D"], spec["dtype"]
    base = base_points(gen, B, N, D, spec["pattern"], spec["scale"])
    if share is not None and share.shape[1] and N:
        k = min(N, share.shape[1]) // 2 + 1
        k = min(k, N, share.shape[1])
        base[:, :k] = share[:, :k]
    layout = spec["layout"]
    if layout == "expanded":
        base = base[:1].expand(B, N, D).clone()
    lengths = list(spec["lengths"])
    kind = spec["lengths_kind"]
    invalid = questionable = None
    if kind == "none":
        lengths = [N] * B
    floating = dtype.is_floating_point
    values = base.to(dtype) if floating else torch.round(base).to(dtype)
    inject = spec["inject"]
    if inject != "none" and floating and N:
        bad = float("nan") if inject.startswith("nan") else float("inf")
        if inject.endswith("valid"):
            b = max(range(B), key=lambda i: lengths[i])
            if lengths[b]:
                values[b if layout != "expanded" else slice(None), lengths[b] - 1, D - 1] = bad
        else:
            b = min(range(B), key=lambda i: lengths[i])
            if lengths[b] < N and layout != "expanded":
                values[b, N - 1, 0] = bad
    # the tensor handed over, in the drawn layout
    grad = spec["grad"] and floating
    if layout == "transposed":
        storage = values.transpose(1, 2).contiguous()
        leaf = storage.requires_grad_(grad)
        tensor = leaf.transpose(1, 2)
    elif layout == "sliced":
        storage = torch.zeros(B, 2 * N + 1, D + 1, dtype=dtype)
        storage[:, 1::2, :D] = values
        leaf = storage.requires_grad_(grad)
        tensor = leaf[:, 1::2, :D]
    elif layout == "expanded":
        leaf = values[:1].clone().requires_grad_(grad)
        tensor = leaf.expand(B, N, D)
    else:
        leaf = values.clone().requires_grad_(grad)
        tensor = leaf
    form = spec["form"]
    if form == "single" and B != 1:
        form = "padded"
    if form == "list" and kind == "bad":
        form = "padded"
    lengths_arg = None
    if form == "padded" and kind != "none":
        lengths_arg = torch.tensor(lengths, dtype=torch.int64)
        if kind == "bad":
            lengths_arg[0] = N + 1 if N % 2 == 0 else -1
            invalid = f"lengths {lengths_arg.tolist()} out of [0, {N}]"
        elif kind == "int32":
            lengths_arg = lengths_arg.to(torch.int32)
        elif kind == "float":
            lengths_arg = lengths_arg.double()
            invalid = "floating-point lengths"
        elif kind == "list":
            lengths_arg = list(lengths)
    elif form != "padded":
        if form == "single":
            lengths = [N]
        # list form: clouds cut at their lengths (a drawn "none" keeps them full)
    if form == "list":
        arg = [tensor[b, : lengths[b]] for b in range(B)]
    elif form == "single":
        arg = tensor[0]
    else:
        arg = tensor
    used = values.double()
    if not floating:
        invalid = invalid or f"integer dtype {dtype}"
    elif invalid is None:
        finite = all(bool(torch.isfinite(used[b, : lengths[b]]).all()) for b in range(B))
        if not finite:
            invalid = "NaN/Inf among the valid points"
    pad = torch.arange(N)[None, :] >= torch.tensor(lengths)[:, None] if N else None
    if form == "list":
        used = used[:, : max(lengths)]  # the library pads a list to its longest cloud
    return Cloud(
        arg=arg,
        lengths_arg=lengths_arg,
        values=used,
        lengths=lengths,
        dtype=dtype,
        grad_input=tensor if grad else None,
        pad=pad if grad else None,
        invalid=invalid,
        questionable=questionable,
        form=form,
        unbatched=form == "single",
    )


@st.composite
def cloud_pairs(draw, D=None, max_n=40, float_only=False):
    B = draw(st.integers(1, 3))
    D = draw(st.integers(1, 4)) if D is None else D
    xs = draw(cloud_specs(B, D, max_n, float_only))
    ys = draw(cloud_specs(B, D, max_n, float_only))
    if draw(st.integers(0, 3)):  # mostly the same dtype
        ys["dtype"] = xs["dtype"]
    if draw(st.booleans()):
        xs = with_defect(draw, xs, float_only)
    else:
        ys = with_defect(draw, ys, float_only)
    if ys["form"] == "single" or xs["form"] == "single":
        xs["form"] = ys["form"] = "single" if B == 1 else "padded"
    return xs, ys, draw(st.booleans())


def build_pair(xs, ys, share):
    x = make_cloud(xs)
    y = make_cloud(ys, share=x.values if share else None)
    invalid = x.invalid or y.invalid
    questionable = None
    if x.dtype != y.dtype and x.dtype.is_floating_point and y.dtype.is_floating_point:
        questionable = f"mixed dtypes {x.dtype} and {y.dtype}"
    if y.unbatched != x.unbatched:
        questionable = questionable or "single cloud against a batch"
    note(f"x: {xs}\ny: {ys}\nshare={share}; invalid={invalid}; questionable={questionable}")
    return x, y, invalid, questionable


def nn_check(xv, yv, n, m, idx, dist, tol, exact, what, norm=2):
    """idx (n,) nearest y points of x[:n] among y[:m] and their distances dist (n,) (squared for
    norm 2, L1 for norm 1) against float64: the distance of the returned index is minimal (within
    tol), dist matches, and exact ties among duplicate points go to the smaller index."""
    if n == 0:
        return
    if m == 0:
        assert (idx == -1).all(), f"{what}: index {idx} for an empty target"
        return
    d = ref.pairwise(xv[:n], yv[:m], norm)  # (n, m)
    best, first = d.min(1)
    assert ((idx >= 0) & (idx < m)).all(), f"{what}: index out of range: {idx}"
    chosen = d.gather(1, idx.long().view(-1, 1))[:, 0]
    S = d.max()
    assert (chosen - best <= tol * (best + S) + 1e-300).all(), f"{what}: not the nearest point: {idx} vs {first}"
    assert_close(dist, chosen, tol, f"{what} distances", scale=float(S))
    if exact:
        for i in range(n):
            j = int(idx[i])
            same = (yv[:m] == yv[j]).all(-1).nonzero()[:, 0]
            assert j == int(same.min()), f"{what}: tie between duplicates {same.tolist()} went to {j}, not the smallest"


def per_cloud(t, unbatched):
    return t.unsqueeze(0) if unbatched else t


# ------------------------------------------------------------------------------------------------
# knn_points, knn_gather


@SETTINGS
@given(pair=cloud_pairs(), K=st.one_of(st.integers(1, 6), st.sampled_from([41, 100, 4096, 2**31, 2**62])),
       norm=st.sampled_from([1, 2, 2]), return_nn=st.booleans())
def test_knn_points(pair, K, norm, return_nn):
    x, y, invalid, questionable = build_pair(*pair)
    huge = K > 4096
    out = call(
        lambda: pm.knn_points(x.arg, y.arg, K=K, x_lengths=x.lengths_arg, y_lengths=y.lengths_arg, norm=norm,
                              return_nn=return_nn),
        ["x", "y", "K", "x_lengths", "y_lengths", "norm", "return_nn"],
        must_fail=invalid,
        may_fail=questionable or ("huge K" if huge else None),
    )
    if out.error is not None:
        return
    r = out.value
    dists, idx = per_cloud(r.dists, x.unbatched), per_cloud(r.idx, x.unbatched)
    B, N = x.values.shape[:2]
    assert dists.shape == idx.shape == (B, N, K), f"shape {tuple(dists.shape)}, expected {(B, N, K)}"
    assert idx.dtype == torch.int64
    assert torch.isfinite(dists).all(), f"non-finite distances: {dists}"
    tol = tol_of(x.dtype, y.dtype)
    exact = x.dtype == y.dtype == torch.float64
    rd, ri = ref.knn_points(x.values, y.values, K, x.lengths, y.lengths, norm)
    for b in range(B):
        n, m = x.lengths[b], y.lengths[b]
        assert (idx[b, n:] == -1).all() and (dists[b, n:] == 0).all(), "padding rows not -1 / 0"
        k = min(K, m)
        assert (idx[b, :n, k:] == -1).all() and (dists[b, :n, k:] == 0).all(), "missing neighbours not -1 / 0"
        if n == 0 or m == 0:
            continue
        assert_close(dists[b, :n, :k], rd[b, :n, :k], tol, f"knn dists cloud {b}")
        assert (dists[b, :n, 1:k] >= dists[b, :n, : k - 1]).all(), "distances not sorted"
        for i in range(n):
            row = idx[b, i, :k]
            assert len(set(row.tolist())) == k, f"repeated neighbour indices {row.tolist()}"
        nn_check(x.values[b], y.values[b], n, m, idx[b, :n, 0], dists[b, :n, 0], tol, exact, f"knn cloud {b}", norm)
    if return_nn:
        nn = per_cloud(r.knn, x.unbatched)
        assert nn.shape == (B, N, K, x.values.shape[2])
        yv = y.values if y.values.shape[1] else torch.zeros(B, 1, y.values.shape[2], dtype=torch.float64)
        expect = torch.where((idx >= 0)[..., None], yv.gather(
            1, idx.clamp(min=0).reshape(B, N * K, 1).expand(-1, -1, yv.shape[2])).reshape(nn.shape), 0.0)
        assert_close(nn, expect, 0.0, "knn coordinates")
    backward_ok(r.dists, [x.grad_input, y.grad_input], [x.pad, y.pad], "knn_points")


@st.composite
def gather_cases(draw):
    B = draw(st.integers(1, 3))
    M = draw(st.integers(0, 12))
    N = draw(st.integers(0, 6))
    K = draw(st.integers(1, 5))
    D = draw(st.integers(1, 4))
    return dict(
        B=B, M=M, N=N, K=K, D=D,
        dtype=draw(st.sampled_from(FLOATS)),
        idx_dtype=draw(st.sampled_from([torch.int64, torch.int64, torch.int32, torch.float32])),
        bad=draw(st.sampled_from(["none", "none", "none", "too_big", "too_negative"])),
        lengths=draw(st.one_of(st.none(), st.lists(st.integers(0, M), min_size=B, max_size=B))),
        nan_padding=draw(st.booleans()),
        grad=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


@SETTINGS
@given(case=gather_cases())
def test_knn_gather(case):
    note(str(case))
    gen = torch.Generator().manual_seed(case["seed"])
    B, M, N, K, D = (case[k] for k in "BMNKD")
    points = (torch.rand(B, M, D, generator=gen, dtype=torch.float64) * 2 - 1).to(case["dtype"])
    lengths = case["lengths"]
    if case["nan_padding"] and lengths is not None:
        for b in range(B):
            points[b, lengths[b]:] = float("nan")
    idx = torch.randint(-1, max(M, 1), (B, N, K), generator=gen)
    if M == 0:
        idx.fill_(-1)
    invalid = None
    if case["bad"] == "too_big" and idx.numel():
        idx.view(-1)[0] = M + 3
        invalid = "index past the points"
    elif case["bad"] == "too_negative" and idx.numel():
        idx.view(-1)[0] = -5
        invalid = "index below -1"
    if case["idx_dtype"] == torch.float32:
        idx = idx.float()
        invalid = invalid or "floating-point idx"
    elif case["idx_dtype"] == torch.int32:
        idx = idx.int()
    leaf = points.clone().requires_grad_(case["grad"])
    lengths_t = None if lengths is None else torch.tensor(lengths)
    out = call(lambda: pm.knn_gather(leaf, idx, lengths_t), ["points", "idx", "lengths"], must_fail=invalid)
    if out.error is not None:
        return
    g = out.value
    assert g.shape == (B, N, K, D)
    il = idx.long()
    valid = il >= 0
    if lengths_t is not None:
        valid &= il < lengths_t.view(B, 1, 1)
    expect = torch.zeros(B, N, K, D, dtype=torch.float64)
    for b in range(B):
        for i in range(N):
            for k in range(K):
                if valid[b, i, k]:
                    expect[b, i, k] = points[b, il[b, i, k]].double()
    assert_close(g, expect, 0.0, "knn_gather")
    pad = None
    if lengths is not None:
        pad = torch.arange(M)[None] >= torch.tensor(lengths)[:, None]
    backward_ok(g, [leaf], [pad], "knn_gather")


# ------------------------------------------------------------------------------------------------
# Chamfer (PyTorch3D's loss), the benchmark conventions, Hausdorff, F-score, correspondences


@st.composite
def chamfer_options(draw):
    point_reduction = draw(st.sampled_from(["mean", "sum", "max", None]))
    batch_reduction = None if point_reduction is None else draw(st.sampled_from(["mean", "sum", None]))
    return dict(
        point_reduction=point_reduction,
        batch_reduction=batch_reduction,
        norm=draw(st.sampled_from([1, 2])),
        single_directional=draw(st.booleans()),
        abs_cosine=draw(st.booleans()),
        normals=draw(st.booleans()) and point_reduction != "max",
        weights=draw(st.sampled_from([None, None, "positive", "zero", "negative", "nan"])),
    )


def nearest_unambiguous(x, y, tol) -> bool:
    """Every valid point's nearest neighbour in the other cloud beats the second nearest by more
    than the input precision (relative ``tol`` of the clouds' extent), in both directions."""
    for b in range(x.values.shape[0]):
        xs, ys = x.values[b, : x.lengths[b]].double(), y.values[b, : y.lengths[b]].double()
        if not (torch.isfinite(xs).all() and torch.isfinite(ys).all()):
            return False
        scale = float(torch.cat([xs.abs().flatten(), ys.abs().flatten(), torch.ones(1)]).max())
        for q, c in ((xs, ys), (ys, xs)):
            if q.shape[0] and c.shape[0] > 1:
                d = ref.pairwise(q, c).sqrt().sort(1).values
                if bool(((d[:, 1] - d[:, 0]) <= 4 * tol * scale).any()):
                    return False
    return True


@SETTINGS
@given(pair=cloud_pairs(), options=chamfer_options(), seed=st.integers(0, 2**16))
def test_chamfer_distance(pair, options, seed):
    x, y, invalid, questionable = build_pair(*pair)
    note(str(options))
    gen = torch.Generator().manual_seed(seed)
    B, N, D = x.values.shape
    M = y.values.shape[1]
    xn = yn = None
    if options["normals"] and x.form == y.form == "padded":
        xn = torch.randn(B, N, D, generator=gen, dtype=torch.float64).to(x.dtype if x.dtype.is_floating_point
                                                                         else torch.float32)
        yn = torch.randn(B, M, D, generator=gen, dtype=torch.float64).to(y.dtype if y.dtype.is_floating_point
                                                                         else torch.float32)
    weights = None
    if options["weights"] is not None:
        weights = {"positive": torch.rand(B, generator=gen, dtype=torch.float64) + 0.5,
                   "zero": torch.zeros(B, dtype=torch.float64),
                   "negative": -torch.ones(B, dtype=torch.float64),
                   "nan": torch.full((B,), float("nan"), dtype=torch.float64)}[options["weights"]]
        if options["weights"] in ("negative", "nan"):
            invalid = invalid or "bad weights"
        weights = weights.to(x.dtype if x.dtype.is_floating_point else torch.float32)
    o = {k: options[k] for k in ("point_reduction", "batch_reduction", "norm", "single_directional", "abs_cosine")}
    out = call(
        lambda: pm.chamfer_distance(x.arg, y.arg, x_lengths=x.lengths_arg, y_lengths=y.lengths_arg,
                                    x_normals=xn, y_normals=yn, weights=weights, **o),
        ["x", "y", "x_lengths", "y_lengths", "x_normals", "y_normals", "weights", "batch_reduction",
         "point_reduction", "norm", "single_directional", "abs_cosine"],
        must_fail=invalid,
        may_fail=questionable,
    )
    if out.error is not None:
        return
    loss, loss_n = out.value
    e_loss, e_n = ref.chamfer_distance(
        x.values, y.values, x.lengths, y.lengths,
        None if xn is None else xn.double(), None if yn is None else yn.double(),
        None if weights is None else weights.double(), **o)
    tol = tol_of(x.dtype, y.dtype)
    # The normal term jumps between near-tied neighbours: compare it only where the nearest ones are clear.
    check_normals = xn is not None and nearest_unambiguous(x, y, tol)
    if options["point_reduction"] is None and not options["single_directional"]:
        assert_close(loss[0], e_loss[0], tol, "chamfer x->y per point")
        assert_close(loss[1], e_loss[1], tol, "chamfer y->x per point")
        if check_normals:
            assert_close(loss_n[0], e_n[0], tol, "chamfer normals x->y per point")
            assert_close(loss_n[1], e_n[1], tol, "chamfer normals y->x per point")
        outputs = list(loss) + (list(loss_n) if loss_n is not None else [])
    else:
        assert_close(loss, e_loss, tol, "chamfer loss")
        if check_normals:
            assert_close(loss_n, e_n, tol, "chamfer normal loss")
        elif xn is None:
            assert loss_n is None
        outputs = [loss] + ([loss_n] if loss_n is not None else [])
    for t in outputs:
        assert torch.isfinite(t).all(), f"chamfer_distance must be finite (empty clouds contribute 0): {t}"
    backward_ok(outputs, [x.grad_input, y.grad_input], [x.pad, y.pad], "chamfer_distance")


def empty_pairs(x, y):
    return [b for b in range(len(x.lengths)) if x.lengths[b] == 0 or y.lengths[b] == 0]


def check_nan_warning(out, value_per_cloud, empties, what):
    v = torch.as_tensor(value_per_cloud).detach()
    if empties:
        assert out.warned(RuntimeWarning), f"{what}: an empty cloud gave no RuntimeWarning"
    for b in range(v.shape[0]):
        if b in empties:
            assert torch.isnan(v[b]).all(), f"{what}: empty cloud {b} gave {v[b]}, not NaN"
        else:
            assert torch.isfinite(v[b]).all(), f"{what}: cloud {b} is not finite: {v[b]}"


@SETTINGS
@given(pair=cloud_pairs(), convention=st.sampled_from(["l1", "l2", "sq_halve", "unsq_full"]),
       reduction=st.sampled_from(["mean", "sum", None]))
def test_chamfer_conventions(pair, convention, reduction):
    x, y, invalid, questionable = build_pair(*pair)
    squared, halve = {"l1": (False, True), "l2": (True, False), "sq_halve": (True, True),
                      "unsq_full": (False, False)}[convention]
    names = ["x", "y", "x_lengths", "y_lengths", "reduction", "squared", "halve"]
    if convention == "l1":
        fn = lambda: pm.chamfer_l1(x.arg, y.arg, x.lengths_arg, y.lengths_arg, reduction=reduction)  # noqa: E731
    elif convention == "l2":
        fn = lambda: pm.chamfer_l2(x.arg, y.arg, x.lengths_arg, y.lengths_arg, reduction=reduction)  # noqa: E731
    else:
        fn = lambda: pm.chamfer(x.arg, y.arg, squared=squared, halve=halve, x_lengths=x.lengths_arg,  # noqa: E731
                                y_lengths=y.lengths_arg, reduction=reduction)
    out = call(fn, names, must_fail=invalid, may_fail=questionable)
    if out.error is not None:
        return
    expect = ref.chamfer(x.values, y.values, squared, halve, x.lengths, y.lengths)
    empties = empty_pairs(x, y)
    value = out.value
    if reduction is None:
        per = per_cloud(value, x.unbatched)
        check_nan_warning(out, per, empties, f"chamfer {convention}")
        assert_close(per, expect, tol_of(x.dtype, y.dtype), f"chamfer {convention}")
    else:
        e = expect.mean() if reduction == "mean" else expect.sum()
        if empties:
            assert out.warned(RuntimeWarning), "an empty cloud gave no RuntimeWarning"
        assert_close(value, e, tol_of(x.dtype, y.dtype), f"chamfer {convention} {reduction}")
    backward_ok(value, [x.grad_input, y.grad_input], [x.pad, y.pad], f"chamfer {convention}")


@SETTINGS
@given(pair=cloud_pairs(), direction=st.sampled_from(["symmetric", "x_to_y", "y_to_x"]))
def test_hausdorff_distance(pair, direction):
    x, y, invalid, questionable = build_pair(*pair)
    out = call(lambda: pm.hausdorff_distance(x.arg, y.arg, x.lengths_arg, y.lengths_arg, direction=direction),
               ["x", "y", "x_lengths", "y_lengths", "direction"], must_fail=invalid, may_fail=questionable)
    if out.error is not None:
        return
    h = out.value
    dist = per_cloud(h.distance, x.unbatched)
    xi, yi = per_cloud(h.x_index, x.unbatched), per_cloud(h.y_index, x.unbatched)
    empties = empty_pairs(x, y)
    check_nan_warning(out, dist, empties, "hausdorff_distance")
    tol = tol_of(x.dtype, y.dtype)
    B = len(x.lengths)
    expect = torch.full((B,), float("nan"), dtype=torch.float64)
    for b in range(B):
        n, m = x.lengths[b], y.lengths[b]
        if b in empties:
            assert xi[b] == -1 and yi[b] == -1, "empty cloud: indices must be -1"
            continue
        d = ref.pairwise(x.values[b, :n], y.values[b, :m])
        hx, hy = d.min(1).values.max(), d.min(0).values.max()
        e = {"symmetric": torch.maximum(hx, hy), "x_to_y": hx, "y_to_x": hy}[direction]
        expect[b] = e.sqrt()
        i, j = int(xi[b]), int(yi[b])
        assert 0 <= i < n and 0 <= j < m, f"realising pair ({i}, {j}) out of range"
        assert_close(d[i, j].sqrt(), e.sqrt(), tol, "distance of the realising pair", scale=float(d.max().sqrt()))
    assert_close(dist, expect, tol, "hausdorff distance")
    backward_ok(h.distance, [x.grad_input, y.grad_input], [x.pad, y.pad], "hausdorff_distance")


@SETTINGS
@given(pair=cloud_pairs(), taus=st.one_of(
    st.sampled_from([0.1, 0.5, 1.0]),
    st.lists(st.sampled_from([0.05, 0.3, 1.0, 2.5, 0.0, -1.0, float("nan"), float("inf")]), min_size=0, max_size=3)),
    tensor_taus=st.booleans())
def test_fscore(pair, taus, tensor_taus):
    x, y, invalid, questionable = build_pair(*pair)
    scale = x.values.abs().max().item() if x.values.numel() and torch.isfinite(x.values).all() else 1.0
    scale = scale or 1.0
    scalar = isinstance(taus, float)
    tau_list = [taus] if scalar else list(taus)
    bad_tau = not tau_list or any(not (math.isfinite(t) and t > 0) for t in tau_list)
    thresholds = [t * scale for t in tau_list]
    arg = thresholds[0] if scalar else (torch.tensor(thresholds, dtype=torch.float64) if tensor_taus else thresholds)
    out = call(lambda: pm.fscore(x.arg, y.arg, arg, x.lengths_arg, y.lengths_arg),
               ["x", "y", "thresholds", "x_lengths", "y_lengths"],
               must_fail=invalid or ("bad thresholds" if bad_tau else None), may_fail=questionable)
    if out.error is not None:
        return
    f = out.value
    fs, p, r = (per_cloud(t, x.unbatched) for t in (f.fscore, f.precision, f.recall))
    if scalar:
        fs, p, r = fs[:, None], p[:, None], r[:, None]
    empties = empty_pairs(x, y)
    check_nan_warning(out, fs, empties, "fscore")
    tol = tol_of(x.dtype, y.dtype)
    tau = torch.tensor(thresholds, dtype=torch.float64)
    for b in range(len(x.lengths)):
        if b in empties:
            assert torch.isnan(p[b]).all() and torch.isnan(r[b]).all()
            continue
        n, m = x.lengths[b], y.lengths[b]
        d = ref.pairwise(x.values[b, :n], y.values[b, :m]).sqrt()
        dx, dy = d.min(1).values[:, None], d.min(0).values[:, None]
        for name, got, dd in (("precision", p[b], dx), ("recall", r[b], dy)):
            lo = (dd < tau * (1 - 4 * tol)).double().mean(0)
            hi = (dd < tau * (1 + 4 * tol)).double().mean(0)
            assert ((got.double() >= lo - 1e-6) & (got.double() <= hi + 1e-6)).all(), (
                f"{name} {got} outside [{lo}, {hi}] for cloud {b}")
        pp, rr = p[b].double(), r[b].double()
        ef = torch.where(pp + rr > 0, 2 * pp * rr / (pp + rr).clamp(min=1e-30), 0.0)
        assert_close(fs[b], ef, tol, "F from P and R")


@SETTINGS
@given(pair=cloud_pairs(), with_normals=st.booleans(), seed=st.integers(0, 2**16))
def test_correspondences_and_normal_consistency(pair, with_normals, seed):
    x, y, invalid, questionable = build_pair(*pair)
    out = call(lambda: pm.correspondences(x.arg, y.arg, x.lengths_arg, y.lengths_arg),
               ["x", "y", "x_lengths", "y_lengths"], must_fail=invalid, may_fail=questionable)
    if out.error is not None:
        return
    c = out.value
    tol = tol_of(x.dtype, y.dtype)
    exact = x.dtype == y.dtype == torch.float64
    dx, ix, dy, iy = c.x_to_y, c.x_to_y_index, c.y_to_x, c.y_to_x_index  # (B, N) / (B, M) even for one cloud
    for b in range(len(x.lengths)):
        n, m = x.lengths[b], y.lengths[b]
        nn_check(x.values[b], y.values[b], n, m, ix[b, :n], dx[b, :n].double().square(), tol, exact, f"x->y {b}")
        nn_check(y.values[b], x.values[b], m, n, iy[b, :m], dy[b, :m].double().square(), tol, exact, f"y->x {b}")
    backward_ok([c.x_to_y, c.y_to_x], [x.grad_input, y.grad_input], [x.pad, y.pad], "correspondences")
    if not with_normals:
        return
    gen = torch.Generator().manual_seed(seed)
    B, N = x.values.shape[:2]
    M = y.values.shape[1]
    D = x.values.shape[2]
    xn = torch.randn(B, N, D, generator=gen, dtype=torch.float64)  # normals have the points' shape
    yn = torch.randn(B, M, D, generator=gen, dtype=torch.float64)
    if N:
        xn[:, 0] = 0.0  # a zero normal counts as 0
    xna, yna = xn.to(x.dtype), yn.to(y.dtype)
    if x.unbatched:
        xna, yna = xna[0], yna[0]
    nc_invalid = invalid
    if x.form == "list" or y.form == "list":
        nc_invalid = None
    out = call(lambda: pm.normal_consistency(x.arg, xna, y.arg, yna, x.lengths_arg, y.lengths_arg),
               ["x", "x_normals", "y", "y_normals", "x_lengths", "y_lengths"],
               must_fail=nc_invalid, may_fail=questionable or ("list clouds" if x.form == "list" else None))
    if out.error is not None:
        return
    nc = per_cloud(out.value, x.unbatched)
    empties = empty_pairs(x, y)
    check_nan_warning(out, nc, empties, "normal_consistency")
    xu, yu = F.normalize(xna.double(), dim=-1, eps=1e-12), F.normalize(yna.double(), dim=-1, eps=1e-12)
    xu, yu = per_cloud(xu, x.unbatched), per_cloud(yu, x.unbatched)
    for b in range(B):
        if b in empties:
            continue
        n, m = x.lengths[b], y.lengths[b]
        ax = (xu[b, :n] * yu[b, ix[b, :n]]).sum(-1).abs().mean()
        ay = (yu[b, :m] * xu[b, iy[b, :m]]).sum(-1).abs().mean()
        assert_close(nc[b], 0.5 * (ax + ay), tol, f"normal consistency {b}")


# ------------------------------------------------------------------------------------------------
# Earth Mover's Distance (small sets: the oracle is an exact assignment)


def exact_emd(xv, yv, p):
    """Exact optimal mean cost of a one-to-one matching of the smaller set into the larger."""
    from scipy.optimize import linear_sum_assignment

    cost = ref.pairwise(xv, yv)
    cost = cost if p == 2 else cost.sqrt()
    rows, cols = linear_sum_assignment(cost.numpy())
    return float(cost.numpy()[rows, cols].mean())


@SETTINGS
@given(pair=cloud_pairs(max_n=9), p=st.sampled_from([1, 2]), rel_tol=st.sampled_from([1e-3, 1e-2, 0.5, 0.0, -1.0]))
def test_earth_movers_distance(pair, p, rel_tol):
    x, y, invalid, questionable = build_pair(*pair)
    out = call(lambda: pm.earth_movers_distance(x.arg, y.arg, x.lengths_arg, y.lengths_arg, p=p, rel_tol=rel_tol),
               ["x", "y", "x_lengths", "y_lengths", "p", "rel_tol", "max_rounds"],
               must_fail=invalid or ("rel_tol <= 0" if rel_tol <= 0 else None), may_fail=questionable)
    if out.error is not None:
        return
    r = out.value
    dist, assign = per_cloud(r.distance, x.unbatched), per_cloud(r.assignment, x.unbatched)
    lower, gap = per_cloud(r.lower_bound, x.unbatched), per_cloud(r.gap, x.unbatched)
    B, N = x.values.shape[:2]
    assert assign.shape == (B, N)
    empties = [b for b in range(B) if min(x.lengths[b], y.lengths[b]) == 0]
    check_nan_warning(out, dist, empties, "earth_movers_distance")
    tol = tol_of(x.dtype, y.dtype)
    for b in range(B):
        n, m = x.lengths[b], y.lengths[b]
        a = assign[b]
        assert (a[n:] == -1).all(), "padding rows must be unmatched"
        if b in empties:
            assert (a == -1).all()
            continue
        xv, yv = x.values[b, :n], y.values[b, :m]
        matched = a[:n] >= 0
        assert int(matched.sum()) == min(n, m), f"{int(matched.sum())} pairs matched, expected {min(n, m)}"
        targets = a[:n][matched]
        assert (targets < m).all() and len(set(targets.tolist())) == len(targets), f"not one-to-one: {a.tolist()}"
        pair_cost = (xv[matched] - yv[targets]).square().sum(-1)
        pair_cost = pair_cost if p == 2 else pair_cost.sqrt()
        own = float(pair_cost.mean())
        best = exact_emd(xv, yv, p)
        scale = float((ref.pairwise(xv, yv) if p == 2 else ref.pairwise(xv, yv).sqrt()).max())
        assert_close(dist[b], own, tol, "EMD distance against its own assignment", scale=scale)
        slack = max(rel_tol, 0) * best + tol * scale + 1e-300
        assert own <= best + slack, f"EMD {own} exceeds (1 + rel_tol) * exact {best}"
        assert float(lower[b]) <= best + tol * scale + 1e-300, f"lower bound {float(lower[b])} above exact {best}"
        assert torch.isfinite(gap[b]) and float(gap[b]) >= -tol, f"gap {float(gap[b])}"
    backward_ok(r.distance, [x.grad_input, y.grad_input], [x.pad, y.pad], "earth_movers_distance")
    # The CUDA auction's schedule, run on the CPU by its portable driver, gives the CPU op's result
    # on the same (float64, padding included) inputs, with relaunches after every 3 bids.
    args = (x.values.contiguous(), y.values.contiguous(), torch.tensor(x.lengths), torch.tensor(y.lengths), p,
            float(rel_tol), 1_000_000)
    want = torch.ops.pointmetrics.auction_assignment(*args)
    got = torch.ops.pointmetrics_testing.auction_assignment_portable(*args, 3)
    for name, w, g in zip(("assignment", "cost", "lower", "eps", "rounds", "phases", "complete"), want, got):
        assert torch.equal(w, g), f"portable auction differs from the CPU op in {name}: {g.tolist()} vs {w.tolist()}"


# ------------------------------------------------------------------------------------------------
# Meshes

TETRA_V = [[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]]
TETRA_F = [[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]]
CUBE_V = [[x, y, z] for x in (-1, 1) for y in (-1, 1) for z in (-1, 1)]
CUBE_F = [[0, 1, 3], [0, 3, 2], [4, 6, 7], [4, 7, 5], [0, 4, 5], [0, 5, 1],
          [2, 3, 7], [2, 7, 6], [0, 2, 6], [0, 6, 4], [1, 5, 7], [1, 7, 3]]
FACE_DTYPES = (torch.int64, torch.int64, torch.int32, torch.int16, torch.uint8, torch.int8, torch.float32, torch.bool)
DEGENERACIES = ("none", "repeated_vertex", "collinear", "duplicate_faces", "all_degenerate", "tiny")
BAD_FACES = ("none", "none", "none", "negative", "too_big", "negative_in_padding", "too_big_in_padding")


@st.composite
def mesh_specs(draw, batched=None, max_f=12):
    shape = draw(st.sampled_from(["random", "tetra", "cube", "cube"]))
    V = draw(st.integers(0, 10)) if shape == "random" else (4 if shape == "tetra" else 8)
    F_ = draw(st.integers(0, max_f)) if shape == "random" else (4 if shape == "tetra" else 12)
    batched = draw(st.booleans()) if batched is None else batched
    B = draw(st.integers(1, 2)) if batched else 1
    return dict(
        shape=shape, V=V, F=F_, B=B, batched=batched,
        dtype=draw(st.sampled_from(FLOATS)),
        face_dtype=draw(st.sampled_from(FACE_DTYPES)) if draw(st.integers(0, 2)) == 0 else torch.int64,
        degeneracy=draw(st.sampled_from(DEGENERACIES)),
        bad=draw(st.sampled_from(BAD_FACES)),
        nan_vertex=draw(st.sampled_from(["none", "none", "none", "used", "unused"])),
        face_lengths=draw(st.lists(st.integers(0, F_), min_size=B, max_size=B)) if batched and draw(st.booleans())
        else None,
        scale=draw(st.sampled_from(SCALES)),
        offset=draw(st.sampled_from([0.0, 0.0, 0.3])),
        list_form=batched and draw(st.integers(0, 3)) == 0,
        grad=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


@dataclass
class Mesh:
    verts: object  # what is passed
    faces: object
    face_lengths: object
    v64: list  # per mesh float64 (V, 3)
    f64: list  # per mesh int64 (F_b, 3), valid faces only
    dtype: torch.dtype
    grad_input: torch.Tensor | None
    invalid: str | None
    questionable: str | None
    unbatched: bool


def make_mesh(spec) -> Mesh:
    gen = torch.Generator().manual_seed(spec["seed"])
    B, V, F_ = spec["B"], spec["V"], spec["F"]
    if spec["shape"] == "random":
        verts = torch.rand(B, V, 3, generator=gen, dtype=torch.float64) * 2 - 1
        faces = torch.randint(0, max(V, 1), (B, F_, 3), generator=gen)
        if V == 0 and F_:
            faces.fill_(0)
    else:
        verts = torch.tensor(TETRA_V if spec["shape"] == "tetra" else CUBE_V, dtype=torch.float64)
        verts = (verts - 0.4).expand(B, V, 3).clone()
        faces = torch.tensor(TETRA_F if spec["shape"] == "tetra" else CUBE_F).expand(B, F_, 3).clone()
    invalid = questionable = None
    deg = spec["degeneracy"]
    if F_ and V:
        if deg == "repeated_vertex":
            faces[:, 0, 1] = faces[:, 0, 0]
        elif deg == "collinear" and V >= 3:
            a, b, c = faces[0, 0].tolist()
            if len({a, b, c}) == 3:
                verts[:, c] = 0.25 * verts[:, a] + 0.75 * verts[:, b]
        elif deg == "duplicate_faces":
            faces[:, -1] = faces[:, 0]
        elif deg == "all_degenerate":
            faces[..., 1] = faces[..., 0]
        elif deg == "tiny":
            a, b, c = faces[0, 0].tolist()
            verts[:, b] = verts[:, a] + 1e-7
            verts[:, c] = verts[:, a] + torch.tensor([0.0, 1e-7, 0.0], dtype=torch.float64)
    verts = verts * spec["scale"] + spec["offset"] * spec["scale"]
    batched = spec["batched"]
    fl = spec["face_lengths"] if batched else None
    lengths = fl if fl is not None else [F_] * B
    bad = spec["bad"]
    if F_ and bad != "none":
        in_padding = bad.endswith("in_padding")
        b = 0
        slot = lengths[b] if in_padding else lengths[b] - 1
        if 0 <= slot < F_ and not (in_padding and fl is None):
            faces[b, slot, 2] = -1 if bad.startswith("negative") else V + 2
            if not in_padding:
                invalid = f"face index {int(faces[b, slot, 2])} out of range"
    if spec["nan_vertex"] != "none" and V:
        used = faces[0, : lengths[0]].reshape(-1)
        used = used[(used >= 0) & (used < V)]
        if spec["nan_vertex"] == "used" and len(used):
            verts[0, int(used[0])] = float("nan")
            invalid = invalid or "NaN vertex in a face"
        elif spec["nan_vertex"] == "unused":
            unused = [v for v in range(V) if v not in set(faces[:, :, :].reshape(-1).tolist())]
            if unused:
                verts[:, unused[0]] = float("nan")
    dtype = spec["dtype"]
    vd = verts.to(dtype)
    for b in range(B):
        f = faces[b, : lengths[b]]
        if f.numel() and (int(f.min()) < 0 or int(f.max()) >= V):
            invalid = invalid or f"face index out of [0, {V})"
    if invalid is None:
        for b in range(B):
            f = faces[b, : lengths[b]]
            if f.numel() and not bool(torch.isfinite(vd[b][f.clamp(0, max(V - 1, 0))]).all()) and V:
                invalid = "non-finite vertex in a face (overflow)"
    fdt = spec["face_dtype"]
    if fdt in (torch.float32, torch.bool):
        invalid = invalid or f"faces of dtype {fdt}"
    elif fdt in (torch.uint8, torch.int8, torch.int16):
        if fdt == torch.uint8 and (faces < 0).any():
            fdt = torch.int16  # uint8 cannot hold the negative index
        questionable = f"faces of dtype {fdt}"
    faces_t = faces.to(fdt)
    v64 = [vd[b].double() for b in range(B)]
    f64 = [faces[b, : lengths[b]].long() for b in range(B)] if invalid is None else [
        torch.zeros(0, 3, dtype=torch.int64) for b in range(B)]  # never read for an invalid mesh
    grad = spec["grad"]
    leaf = vd.clone().requires_grad_(grad)
    if not batched:
        verts_arg, faces_arg, fl_arg = leaf[0], faces_t[0], None
    elif spec["list_form"]:
        verts_arg = [leaf[b] for b in range(B)]
        faces_arg = [faces_t[b, : lengths[b]] for b in range(B)]
        fl_arg = None
    else:
        verts_arg, faces_arg = leaf, faces_t
        fl_arg = None if fl is None else torch.tensor(fl)
    note(f"mesh: {spec}; invalid={invalid}; questionable={questionable}")
    return Mesh(verts_arg, faces_arg, fl_arg, v64, f64, dtype, leaf if grad else None, invalid, questionable,
                not batched)


@st.composite
def mesh_queries(draw, B, unbatched):
    N = draw(st.one_of(st.sampled_from([0, 1, 30]), st.integers(0, 30)))
    spec = dict(B=B, N=N, D=3, dtype=draw(st.sampled_from(FLOATS)), pattern=draw(st.sampled_from(PATTERNS)),
                scale=1.0, layout=draw(st.sampled_from(LAYOUTS)), inject=draw(st.sampled_from(INJECT + ("none",) * 4)),
                lengths_kind="none" if unbatched else draw(st.sampled_from(["none", "tensor", "tensor", "tensor",
                                                                            "bad"])),
                lengths=[draw(st.integers(0, N)) for _ in range(B)],
                form="single" if unbatched else "padded", grad=draw(st.booleans()),
                seed=draw(st.integers(0, 2**16)))
    return spec


def queries_for(mesh_spec, qspec):
    qspec = dict(qspec)
    qspec["scale"] = 1.5 * mesh_spec["scale"]
    q = make_cloud(qspec)
    if mesh_spec["offset"]:
        pass  # the queries stay around the origin, the mesh is offset: both near and far queries
    return q


def mesh_oracle(points, verts, faces):
    """(squared distance, winding number) of (N, 3) float64 points to one float64 mesh."""
    if faces.shape[0] == 0 or points.shape[0] == 0:
        nan = torch.full((points.shape[0],), float("nan"), dtype=torch.float64)
        return nan, torch.zeros(points.shape[0], dtype=torch.float64)
    d, _ = ref.closest_points_on_mesh(points, verts, faces)
    w = ref.winding_number(points, verts, faces)
    return d, w


@st.composite
def mesh_cases(draw):
    ms = draw(mesh_specs())
    qs = draw(mesh_queries(ms["B"], not ms["batched"]))
    return ms, qs


@SETTINGS
@given(case=mesh_cases(), beta=st.sampled_from([2.0, 3.0, 1e9, 0.0]),
       api=st.sampled_from(["bvh", "functions"]))
def test_mesh_queries(case, beta, api):
    """MeshBVH.closest_points / winding_number / occupancy / signed_distance, the module-level
    closest_points_on_mesh / winding_number / occupancy / signed_distance, and
    point_to_surface_distance."""
    ms, qs = case
    mesh = make_mesh(ms)
    q = queries_for(ms, qs)
    invalid = mesh.invalid or q.invalid
    questionable = mesh.questionable or (f"mixed dtypes {mesh.dtype} and {q.dtype}" if q.dtype != mesh.dtype
                                         and q.dtype.is_floating_point else None)
    names = ["verts", "faces", "face_lengths", "points", "lengths", "points_lengths", "beta"]
    B = len(mesh.v64)
    if api == "bvh":
        built = call(lambda: pm.MeshBVH(mesh.verts, mesh.faces, mesh.face_lengths), names,
                     must_fail=mesh.invalid, may_fail=mesh.questionable)
        if built.error is not None:
            return
        bvh = built.value
        cp = lambda: bvh.closest_points(q.arg, q.lengths_arg)  # noqa: E731
        wn = lambda: bvh.winding_number(q.arg, q.lengths_arg, beta=beta)  # noqa: E731
        oc = lambda: bvh.occupancy(q.arg, q.lengths_arg, beta=beta)  # noqa: E731
        sd = lambda: bvh.signed_distance(q.arg, q.lengths_arg, beta=beta)  # noqa: E731
        invalid = q.invalid
    else:
        args = lambda: (q.arg, mesh.verts, mesh.faces, q.lengths_arg, mesh.face_lengths)  # noqa: E731
        cp = lambda: pm.closest_points_on_mesh(*args())  # noqa: E731
        wn = lambda: pm.winding_number(*args(), beta=beta)  # noqa: E731
        oc = lambda: pm.occupancy(*args(), beta=beta)  # noqa: E731
        sd = lambda: pm.signed_distance(*args(), beta=beta)  # noqa: E731
    tol = tol_of(mesh.dtype, q.dtype) if q.dtype.is_floating_point else 1e-9
    out = call(cp, names, must_fail=invalid, may_fail=questionable)
    bad_beta = "beta <= 0" if beta <= 0 else None
    w_out = call(wn, names, must_fail=invalid or bad_beta, may_fail=questionable)
    o_out = call(oc, names, must_fail=invalid or bad_beta, may_fail=questionable)
    s_out = call(sd, names, must_fail=invalid or bad_beta, may_fail=questionable)
    p_out = call(lambda: pm.point_to_surface_distance(q.arg, mesh.verts, mesh.faces, q.lengths_arg,
                                                      mesh.face_lengths, reduction=None),
                 names + ["reduction"], must_fail=invalid, may_fail=questionable)
    if out.error is not None:
        return
    r = out.value
    un = mesh.unbatched and q.unbatched
    sq, dist, face, bary, pts = (per_cloud(t, un) for t in (r.sq_distance, r.distance, r.face, r.bary, r.points))
    empty_meshes = [b for b in range(B) if mesh.f64[b].shape[0] == 0]
    if empty_meshes and any(q.lengths[b] for b in empty_meshes):
        assert out.warned(RuntimeWarning), "an empty mesh gave no RuntimeWarning"
    scale2 = (3 * ms["scale"]) ** 2
    for b in range(B):
        n = q.lengths[b]
        pv = q.values[b, :n]
        e_sq, e_w = mesh_oracle(pv, mesh.v64[b], mesh.f64[b])
        assert_close(sq[b, :n], e_sq, tol, f"closest_points sq_distance mesh {b}", scale=scale2)
        assert_close(dist[b, :n], e_sq.sqrt(), tol, f"closest_points distance mesh {b}", scale=math.sqrt(scale2))
        if b in empty_meshes:
            assert (face[b] == -1).all()
            continue
        fb = face[b, :n]
        assert ((fb >= 0) & (fb < mesh.f64[b].shape[0])).all(), f"face index out of range: {fb.tolist()}"
        assert (face[b, n:] == -1).all(), "padding queries must have face -1"
        corners = mesh.v64[b][mesh.f64[b][fb]]  # (n, 3, 3)
        from_bary = (bary[b, :n].double().unsqueeze(-1) * corners).sum(1)
        assert_close(pts[b, :n], from_bary, tol, "closest point against its barycentric weights", scale=3 * ms["scale"])
        assert_close((pts[b, :n].double() - pv).square().sum(-1), e_sq, 10 * tol,
                     "distance to the returned closest point", scale=scale2)
        if w_out.error is None:
            w = per_cloud(w_out.value, un)[b, :n]
            away = e_sq > (1e-3 * ms["scale"]) ** 2  # the winding number jumps on the surface
            wt = 1e-6 if beta >= 1e6 else 0.1
            assert_close(torch.where(away, w.double(), 0.0), torch.where(away, e_w, 0.0), wt, f"winding number {b}",
                         scale=1)
            if o_out.error is None:
                occ = per_cloud(o_out.value, un)[b, :n]
                assert torch.equal(occ, w >= 0.5), "occupancy is not winding number >= 0.5"
                if s_out.error is None:
                    s = per_cloud(s_out.value, un)[b, :n]
                    assert_close(s, torch.where(occ, -dist[b, :n].double(), dist[b, :n].double()), tol,
                                 "signed distance", scale=math.sqrt(scale2))
        if p_out.error is None:
            p2s = per_cloud(p_out.value, un)
            e = e_sq.sqrt().mean() if n else torch.tensor(float("nan"), dtype=torch.float64)
            assert_close(p2s[b], e, tol, f"point_to_surface_distance {b}")
    if p_out.error is None and any(q.lengths[b] == 0 for b in range(B)):
        assert p_out.warned(RuntimeWarning), "point_to_surface_distance: empty cloud without a warning"
    if not empty_meshes:
        backward_ok([r.distance, r.points], [q.grad_input, mesh.grad_input], [q.pad, None], "closest_points")


@st.composite
def single_mesh_cases(draw):
    return draw(mesh_specs(batched=False))


def face_areas64(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """Face areas in float64 as the library defines degeneracy (pointmetrics.mesh.face_cross): a
    face with a repeated vertex index, or whose cross product lies within its rounding-error bound
    (identical or collinear corners), has area exactly 0. The plain cross product of a planted
    collinear face is rounding noise, which made the oracle call it positive (found by a sweep)."""
    if f.shape[0] == 0:
        return torch.zeros(0, dtype=torch.float64)
    return 0.5 * face_cross(v.double(), f).norm(dim=1)


@SETTINGS
@given(ms=single_mesh_cases(), n=st.sampled_from([1, 2, 17, 0, -1]), seed=st.integers(0, 2**16))
def test_sample_points_on_mesh(ms, n, seed):
    mesh = make_mesh(ms)
    v, f = mesh.v64[0], mesh.f64[0]
    areas = face_areas64(v, f)
    no_area = "no face with positive area" if not bool((areas > 0).any()) else None
    gen = torch.Generator().manual_seed(seed)
    out = call(lambda: pm.sample_points_on_mesh(mesh.verts, mesh.faces, n, generator=gen),
               ["verts", "faces", "n", "generator"],
               must_fail=mesh.invalid or ("n < 1" if n < 1 else None) or no_area, may_fail=mesh.questionable)
    if out.error is not None:
        return
    s = out.value
    assert s.points.shape == (n, 3) and s.face_idx.shape == (n,) and s.bary.shape == (n, 3)
    assert (areas[s.face_idx] > 0).all(), "a zero-area face was sampled"
    b = s.bary.double()
    tol = tol_of(mesh.dtype)
    assert ((b >= -tol) & (b <= 1 + tol)).all() and torch.allclose(b.sum(1), torch.ones(n, dtype=torch.float64),
                                                                    atol=10 * tol), "bad barycentric weights"
    corners = v[f[s.face_idx]]
    assert_close(s.points, (b.unsqueeze(-1) * corners).sum(1), 10 * tol, "samples against their faces",
                 scale=ms["scale"] * 2)
    nrm = s.normals.double()
    assert_close(nrm.norm(dim=1), torch.ones(n, dtype=torch.float64), 10 * tol, "unit normals", scale=1)
    cross = torch.linalg.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0], dim=1)
    assert_close(nrm, cross / cross.norm(dim=1, keepdim=True), 10 * tol, "face normals", scale=1)
    backward_ok(s.points, [mesh.grad_input], None, "sample_points_on_mesh")
    # mesh_normal_consistency on the same mesh: samples against themselves (normals agree: NC = 1)
    out = call(lambda: pm.mesh_normal_consistency(mesh.verts, mesh.faces, s.points.detach(), s.normals.detach(),
                                                  samples=n, generator=torch.Generator().manual_seed(seed)),
               ["pred_verts", "pred_faces", "gt_points", "gt_normals", "samples", "generator"],
               may_fail=mesh.questionable)
    if out.error is None:
        assert_close(out.value, torch.tensor(1.0, dtype=torch.float64), 10 * tol, "self normal consistency", scale=1)


@SETTINGS
@given(ms=single_mesh_cases(), density=st.sampled_from([0.1, 0.3, 1.0, 5.0, 0.0, -1.0, float("nan")]),
       remove=st.booleans())
def test_sample_mesh_lattice(ms, density, remove):
    from conftest import dtu_reference_sampler

    mesh = make_mesh(ms)
    d = density * ms["scale"] if math.isfinite(density) else density
    out = call(lambda: pm.sample_mesh_lattice(mesh.verts, mesh.faces, density=d, remove_unreferenced=remove),
               ["verts", "faces", "density", "remove_unreferenced", "chunk"],
               must_fail=mesh.invalid or ("density not positive" if not d > 0 else None), may_fail=mesh.questionable)
    if out.error is not None:
        return
    got = out.value
    v, f = mesh.v64[0].numpy(), mesh.f64[0].numpy()
    head = v[np.unique(f)] if remove else v
    if f.shape[0] and (np.linalg.norm(np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]]), axis=-1) > 0).any():
        expect = dtu_reference_sampler(head, np.searchsorted(np.unique(f), f) if remove else f, d)
    else:
        expect = head
    assert got.dtype == torch.float64
    assert got.shape == expect.shape, f"{tuple(got.shape)} samples, expected {expect.shape}"
    assert np.array_equal(got.numpy(), expect, equal_nan=True), "lattice samples differ from DTUeval-python's"


@SETTINGS
@given(pred=single_mesh_cases(), gt=single_mesh_cases(), n_points=st.sampled_from([1, 64, 0]),
       padding=st.sampled_from([0.1, 0.0, -0.5]), seed=st.integers(0, 2**16))
def test_volumetric_iou(pred, gt, n_points, padding, seed):
    pm_, gm = make_mesh(pred), make_mesh(gt)
    v, f = gm.v64[0], gm.f64[0]
    used = v[f.unique()] if f.shape[0] else v
    no_extent = "gt without extent" if used.shape[0] == 0 or not float((used.amax(0) - used.amin(0)).max()) > 0 \
        else None
    gen = torch.Generator().manual_seed(seed)
    out = call(lambda: pm.volumetric_iou(pm_.verts, pm_.faces, gm.verts, gm.faces, n_points=n_points, padding=padding,
                                         generator=gen),
               ["pred_verts", "pred_faces", "gt_verts", "gt_faces", "n_points", "padding", "generator", "beta"],
               must_fail=pm_.invalid or gm.invalid or ("n_points < 1" if n_points < 1 else None)
               or ("negative padding" if padding < 0 else None) or no_extent,
               may_fail=pm_.questionable or gm.questionable or (
                   f"mixed dtypes {pm_.dtype}, {gm.dtype}" if pm_.dtype != gm.dtype else None))
    if out.error is not None:
        return
    r = out.value
    pts = r.points.double()
    assert pts.shape == (n_points, 3)
    for name, mesh, inside in (("gt", gm, r.inside_gt), ("pred", pm_, r.inside_pred)):
        v, f = mesh.v64[0], mesh.f64[0]
        if f.shape[0] == 0:
            assert not inside.any(), f"{name}: an empty mesh has points inside"
            continue
        d, w = mesh_oracle(pts, v, f)
        sure = (d > (1e-3 * float((v.amax(0) - v.amin(0)).max())) ** 2) & ((w - 0.5).abs() > 0.1)
        assert torch.equal(inside[sure], (w >= 0.5)[sure]), f"{name}: occupancy differs from the winding number"
    union = (r.inside_gt | r.inside_pred).sum()
    if int(union) == 0:
        assert torch.isnan(r.iou) and out.warned(RuntimeWarning), "empty union: NaN with a warning"
    else:
        assert_close(r.iou.double(), (r.inside_gt & r.inside_pred).sum().double() / union.double(), 1e-6, "IoU")


@SETTINGS
@given(case=mesh_cases(), samples=st.sampled_from([1, 20, 0]), seed=st.integers(0, 2**16))
def test_point_mesh_distance(case, samples, seed):
    ms, qs = case
    mesh = make_mesh(ms)
    q = queries_for(ms, qs)
    B = len(mesh.v64)
    no_area = None
    for b in range(B):
        v, f = mesh.v64[b], mesh.f64[b]
        if f.shape[0] == 0 or not bool((face_areas64(v, f) > 0).any()):
            no_area = "a mesh without positive area"
    gen = torch.Generator().manual_seed(seed)
    out = call(lambda: pm.point_mesh_distance(q.arg, mesh.verts, mesh.faces, samples=samples, generator=gen,
                                              points_lengths=q.lengths_arg, face_lengths=mesh.face_lengths),
               ["points", "verts", "faces", "samples", "generator", "points_lengths", "face_lengths"],
               must_fail=mesh.invalid or q.invalid or ("samples < 1" if samples < 1 else None),
               may_fail=mesh.questionable or no_area or (f"mixed dtypes {mesh.dtype}, {q.dtype}"
                                                         if mesh.dtype != q.dtype else None))
    if out.error is not None:
        return
    r = out.value
    tol = tol_of(mesh.dtype, q.dtype)
    to_mesh, to_pts, chamfer, drawn = r.points_to_mesh, r.mesh_to_points, r.chamfer, r.samples
    if to_mesh.dim() == 1:
        to_mesh, to_pts, chamfer, drawn = to_mesh[None], to_pts[None], chamfer[None], drawn[None]
    s = 3 * ms["scale"]
    for b in range(B):
        n = q.lengths[b]
        pv = q.values[b, :n]
        e_sq, _ = mesh_oracle(pv, mesh.v64[b], mesh.f64[b])
        assert_close(to_mesh[b, :n], e_sq.sqrt(), tol, f"points_to_mesh {b}", scale=s)
        on, _ = mesh_oracle(drawn[b].double(), mesh.v64[b], mesh.f64[b])
        assert_close(on.sqrt(), torch.zeros_like(on), 10 * tol, f"samples of mesh {b} lie on it", scale=s)
        if n == 0:
            assert torch.isnan(chamfer[b]) or out.warned(RuntimeWarning), "empty cloud: NaN with a warning"
            continue
        e_back = ref.pairwise(drawn[b].double(), pv).min(1).values.sqrt()
        assert_close(to_pts[b], e_back, tol, f"mesh_to_points {b}", scale=s)
        assert_close(chamfer[b], 0.5 * (e_sq.sqrt().mean() + e_back.mean()), tol, f"chamfer {b}", scale=s)
    backward_ok([r.points_to_mesh, r.chamfer], [q.grad_input, mesh.grad_input], [q.pad, None], "point_mesh_distance")


# ------------------------------------------------------------------------------------------------
# Images: PSNR, SSIM, S3IM


@st.composite
def image_pairs(draw, min_hw=0, max_hw=16):
    dims = draw(st.sampled_from([2, 3, 4]))
    H, W = draw(st.integers(min_hw, max_hw)), draw(st.integers(min_hw, max_hw))
    shape = {2: (H, W), 3: (draw(st.integers(1, 3)), H, W), 4: (draw(st.integers(1, 2)), draw(st.integers(1, 3)),
                                                                   H, W)}[dims]
    dt = draw(st.sampled_from(FLOATS + (torch.int64, torch.uint8)))
    return dict(
        shape=shape,
        dtype=dt,
        target_dtype=dt if draw(st.integers(0, 3)) else draw(st.sampled_from(FLOATS)),
        scale=draw(st.sampled_from([1.0, 1.0, 255.0, 1e-4, 1e4])),
        kind=draw(st.sampled_from(["random", "identical", "constant", "nan"])),
        layout=draw(st.sampled_from(["contiguous", "transposed", "expanded"])),
        grad=draw(st.booleans()),
        seed=draw(st.integers(0, 2**16)),
    )


def make_images(spec):
    note(str(spec))
    gen = torch.Generator().manual_seed(spec["seed"])
    shape = spec["shape"]
    a = torch.rand(shape, generator=gen, dtype=torch.float64) * spec["scale"]
    b = torch.rand(shape, generator=gen, dtype=torch.float64) * spec["scale"]
    if spec["kind"] == "identical":
        b = a.clone()
    elif spec["kind"] == "constant":
        a.fill_(0.5 * spec["scale"])
    elif spec["kind"] == "nan" and a.numel():
        a.view(-1)[0] = float("nan")
    if spec["layout"] == "expanded" and a.dim() >= 2 and a.numel():
        a = a[..., :1].expand(shape).clone()
        b = b[..., :1].expand(shape).clone()

    def cast(t, dt):
        return t.to(dt) if dt.is_floating_point else torch.round(t).to(dt)

    pa, pb = cast(a, spec["dtype"]), cast(b, spec["target_dtype"])
    leaf = pa.clone().requires_grad_(spec["grad"] and pa.is_floating_point())
    if spec["layout"] == "transposed" and pa.dim() >= 2:
        storage = leaf.detach().transpose(-1, -2).contiguous().requires_grad_(leaf.requires_grad)
        leaf = storage
        pred = storage.transpose(-1, -2)
        target = pb.transpose(-1, -2).contiguous().transpose(-1, -2)
    elif spec["layout"] == "expanded" and pa.dim() >= 2 and pa.numel():
        leaf = pa[..., :1].clone().requires_grad_(leaf.requires_grad)
        pred = leaf.expand(pa.shape)
        target = pb[..., :1].expand(pb.shape)
    else:
        pred, target = leaf, pb
    invalid = None
    if not (pa.is_floating_point() and pb.is_floating_point()):
        invalid = "integer images"
    questionable = "mixed dtypes" if pa.dtype != pb.dtype else None
    return pred, target, pa.double(), pb.double(), leaf if leaf.requires_grad else None, invalid, questionable


@SETTINGS
@given(spec=image_pairs(), mask_kind=st.sampled_from([None, None, "channel", "full", "zeros", "bad"]),
       data_range=st.sampled_from([1.0, 255.0, 0.0]), per_image=st.booleans())
def test_psnr(spec, mask_kind, data_range, per_image):
    pred, target, a, b, leaf, invalid, questionable = make_images(spec)
    gen = torch.Generator().manual_seed(spec["seed"] + 1)
    mask = None
    shape = a.shape
    if mask_kind == "channel":
        mask = (torch.rand(shape[:-1] + (1,), generator=gen) > 0.3).to(torch.float32)
    elif mask_kind == "full":
        mask = torch.rand(shape, generator=gen) > 0.3
    elif mask_kind == "zeros":
        mask = torch.zeros(shape, dtype=torch.bool)
    elif mask_kind == "bad":
        mask = torch.ones(tuple(s + 2 for s in shape))  # +1 would broadcast against a 0-size dimension
    dim = tuple(range(1, a.dim())) if per_image and a.dim() >= 2 else None
    empty = a.numel() == 0
    out = call(lambda: pm.psnr(pred, target, mask=mask, data_range=data_range, dim=dim),
               ["pred", "target", "mask", "data_range", "dim"],
               must_fail=invalid or ("data_range <= 0" if data_range <= 0 else None)
               or ("mask does not broadcast" if mask_kind == "bad" else None),
               may_fail=questionable or ("empty images" if empty else None)
               or ("an all-zero mask" if mask_kind == "zeros" else None)
               or ("NaN in pred" if spec["kind"] == "nan" else None))
    if out.error is not None:
        return
    value = out.value
    err = (a - b).square()
    w = torch.ones_like(err) if mask is None else torch.broadcast_to(mask.double(), err.shape)
    dims = tuple(range(err.dim())) if dim is None else dim
    mse = (w * err).sum(dims) / w.sum(dims)
    expect = 10 * torch.log10(data_range**2 / mse)
    no_pixels = bool((w.sum(dims) == 0).any()) if w.numel() else True  # a random mask may select none
    nan_ok = empty or no_pixels or mask_kind == "zeros" or spec["kind"] == "nan"
    if not nan_ok:
        assert not torch.isnan(torch.as_tensor(value)).any(), f"psnr is NaN: {value}"
    if torch.isnan(expect).any() and not torch.isnan(torch.as_tensor(value)).all():
        pass  # undefined input (no pixels): any value with the input's problem flagged above
    else:
        assert_close(value, expect, tol_of(pred.dtype, target.dtype) if pred.is_floating_point() else 1e-9, "psnr",
                     scale=0)
    if not nan_ok and torch.isfinite(expect).all():  # identical images: +inf, no finite gradient
        # d PSNR / d pred = -20 / ln 10 (pred - target) / (n MSE) can exceed a half dtype's range:
        # an overflowing gradient is then the right answer in that dtype, not a defect.
        n = err.numel() if dim is None else err[(0,) * (err.dim() - len(dims))].numel()
        largest_grad = (20 / math.log(10) * (a - b).abs().max() / (n * mse.min())).item()
        if leaf is not None:  # an expanded input sums the gradients of its copies
            largest_grad *= max(1.0, err.numel() / max(leaf.numel(), 1))
        if leaf is None or largest_grad < torch.finfo(leaf.dtype).max / 4:
            backward_ok(value, [leaf], None, "psnr")


def gaussian(size, sigma=1.5):
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    g = torch.exp(-offsets.square() / (2 * sigma**2))
    return g / g.sum()


def ssim_oracle(x, y, data_range, kernel_size, sigma, stride, pad):
    """Per-image mean SSIM of (B, C, H, W) float64 images, window by window (unfold)."""
    g = gaussian(kernel_size, sigma)
    w = (g[:, None] * g[None, :]).reshape(-1)  # (k*k,)
    B, C, H, W = x.shape

    def windows(t):
        t = F.pad(t, (pad, pad, pad, pad))
        u = F.unfold(t.reshape(B * C, 1, t.shape[-2], t.shape[-1]), kernel_size, stride=stride)  # (BC, kk, L)
        return u

    ux, uy = windows(x), windows(y)
    mx, my = (w[None, :, None] * ux).sum(1), (w[None, :, None] * uy).sum(1)
    vx = (w[None, :, None] * ux * ux).sum(1) - mx**2
    vy = (w[None, :, None] * uy * uy).sum(1) - my**2
    cxy = (w[None, :, None] * ux * uy).sum(1) - mx * my
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx**2 + my**2 + c1) * (vx + vy + c2))
    return s.reshape(B, -1).mean(1)


@SETTINGS
@given(spec=image_pairs(min_hw=0, max_hw=14), kernel_size=st.sampled_from([11, 7, 3, 4, 1, 0]),
       padding=st.sampled_from(["valid", "zeros", "same"]), reduction=st.sampled_from(["mean", None]),
       data_range=st.sampled_from([1.0, 255.0, -1.0]))
def test_ssim(spec, kernel_size, padding, reduction, data_range):
    pred, target, a, b, leaf, invalid, questionable = make_images(spec)
    H, W = a.shape[-2:]
    pad = 0 if padding == "valid" else (kernel_size - 1) // 2  # the documented zero padding
    too_small = min(H, W) + 2 * pad < kernel_size
    out = call(lambda: pm.ssim(pred, target, data_range=data_range, kernel_size=kernel_size, padding=padding,
                               reduction=reduction),
               ["pred", "target", "data_range", "kernel_size", "sigma", "padding", "reduction"],
               must_fail=invalid or ("padding" if padding == "same" else None)
               or ("kernel_size < 1" if kernel_size < 1 else None) or ("data_range <= 0" if data_range <= 0 else None)
               or ("images smaller than the window" if too_small else None),
               may_fail=questionable or ("empty images" if a.numel() == 0 else None))
    if out.error is not None:
        return
    x = a.reshape(-1, *a.shape[-3:]) if a.dim() >= 3 else a[None, None]
    y = b.reshape(-1, *b.shape[-3:]) if b.dim() >= 3 else b[None, None]
    expect = ssim_oracle(x, y, data_range, kernel_size, 1.5, 1, 0 if padding == "valid" else (kernel_size - 1) // 2)
    if reduction == "mean":
        expect = expect.mean()
    elif a.dim() < 4:
        expect = expect[0]
    if spec["kind"] != "nan":
        assert_close(out.value, expect, 10 * tol_of(pred.dtype, target.dtype), "ssim", scale=1)
        backward_ok(out.value, [leaf], None, "ssim")


@SETTINGS
@given(ph=st.integers(1, 8), pw=st.integers(1, 8), C=st.integers(1, 3), kernel_size=st.sampled_from([4, 3, 1, 0]),
       stride=st.sampled_from([4, 1, 2]), repeat=st.sampled_from([1, 2, 3]), mismatch=st.booleans(),
       dtype=st.sampled_from(FLOATS), grad=st.booleans(), seed=st.integers(0, 2**16))
def test_s3im(ph, pw, C, kernel_size, stride, repeat, mismatch, dtype, grad, seed):
    gen = torch.Generator().manual_seed(seed)
    R = ph * pw + (1 if mismatch else 0)
    a = torch.rand(R, C, generator=gen, dtype=torch.float64).to(dtype)
    b = torch.rand(R, C, generator=gen, dtype=torch.float64).to(dtype)
    leaf = a.clone().requires_grad_(grad)
    out = call(lambda: pm.s3im(leaf, b, kernel_size=kernel_size, stride=stride, repeat=repeat, patch_height=ph,
                               patch_width=pw, generator=torch.Generator().manual_seed(seed)),
               ["pred", "target", "kernel_size", "stride", "repeat", "patch_height", "patch_width", "generator"],
               must_fail=("rays != patch size" if mismatch else None)
               or ("kernel_size < 1" if kernel_size < 1 else None),
               may_fail="virtual patch smaller than the window"
               if min(ph, pw * repeat) + 2 * ((kernel_size - 1) // 2) < kernel_size else None)
    if out.error is not None:
        return
    g = torch.Generator().manual_seed(seed)
    order = [torch.arange(R)] + [torch.randperm(R, generator=g) for _ in range(repeat - 1)]
    index = torch.cat(order)

    def patch(c):
        return c.double()[index].t().reshape(1, C, ph, pw * repeat)

    expect = 1 - ssim_oracle(patch(a), patch(b), 1.0, kernel_size, 1.5, stride, (kernel_size - 1) // 2)[0]
    assert_close(out.value, expect, 10 * tol_of(dtype), "s3im", scale=1)
    backward_ok(out.value, [leaf], None, "s3im")


# ------------------------------------------------------------------------------------------------
# SDF and NeRF regularisers


@st.composite
def field_specs(draw):
    return dict(
        lead=tuple(draw(st.lists(st.integers(0, 6), min_size=0, max_size=2))),
        D=draw(st.integers(1, 4)),
        dtype=draw(st.sampled_from(FLOATS)),
        scale=draw(st.sampled_from([1e-8, 1e-2, 1.0, 1e2, 1e8])),
        nan=draw(st.sampled_from([False, False, True])),
        seed=draw(st.integers(0, 2**16)),
    )


@SETTINGS
@given(spec=field_specs(), kind=st.sampled_from(["sq", "abs", "l3"]),
       mask_kind=st.sampled_from([None, "bool", "float", "zeros", "bad"]), grad=st.booleans(),
       scale=st.sampled_from([1.0, 0.5, 0.0]), convention=st.sampled_from(["instant-nsr-pl", "neus", "bogus"]))
def test_sdf_value_terms(spec, kind, mask_kind, grad, scale, convention):
    """eikonal_loss, sparsity_loss, sdf_points_loss, opacity_entropy_loss, mask_bce_loss."""
    note(str(spec))
    gen = torch.Generator().manual_seed(spec["seed"])
    shape = spec["lead"] + (spec["D"],)
    g64 = torch.randn(shape, generator=gen, dtype=torch.float64) * spec["scale"]
    if spec["nan"] and g64.numel():
        g64.view(-1)[0] = float("nan")
    g = g64.to(spec["dtype"]).requires_grad_(grad)
    gv = g.detach().double()
    tol = 10 * tol_of(spec["dtype"])
    lead = spec["lead"]
    mask = None
    if mask_kind == "bool":
        mask = torch.rand(lead, generator=gen) > 0.4
    elif mask_kind == "float":
        mask = (torch.rand(lead, generator=gen) > 0.4).double()
    elif mask_kind == "zeros":
        mask = torch.zeros(lead, dtype=torch.bool)
    elif mask_kind == "bad":
        mask = torch.ones(tuple(s + 2 for s in lead) + (3,), dtype=torch.bool)
    nan = "NaN in the input" if (spec["nan"] and g64.numel()) or not bool(torch.isfinite(g).all()) else None
    # eikonal
    out = call(lambda: pm.eikonal_loss(g, kind=kind, mask=mask), ["grad", "kind", "mask"],
               must_fail=("kind" if kind == "l3" else None) or ("mask shape" if mask_kind == "bad" else None),
               may_fail=nan)
    if out.error is None and not nan:
        r = (gv.square().sum(-1).sqrt() - 1)
        term = r.square() if kind == "sq" else r.abs()
        w = torch.ones_like(term) if mask is None else mask.double().expand_as(term)
        expect = (term * w).sum() / w.sum().clamp(min=1)
        assert_close(out.value, expect, tol, "eikonal_loss")
        backward_ok(out.value, [g], None, "eikonal_loss")
    # sparsity, sdf points, opacity entropy: the same tensor as SDF values / opacities
    out = call(lambda: pm.sparsity_loss(g, scale=scale), ["sdf", "scale"],
               must_fail="scale <= 0" if scale <= 0 else None, may_fail=nan)
    if out.error is None and not nan:
        expect = torch.exp(-scale * gv.abs()).sum() / max(gv.numel(), 1)
        assert_close(out.value, expect, tol, "sparsity_loss")
        backward_ok(out.value, [g], None, "sparsity_loss")
    out = call(lambda: pm.sdf_points_loss(g), ["sdf_at_points"], may_fail=nan)
    if out.error is None and not nan:
        assert_close(out.value, gv.abs().sum() / max(gv.numel(), 1), tol, "sdf_points_loss")
        if gv.numel() == 0:
            assert out.warned(RuntimeWarning), "sdf_points_loss: no points without a warning"
        backward_ok(out.value, [g], None, "sdf_points_loss")
    out = call(lambda: pm.opacity_entropy_loss(g), ["opacity"], may_fail=nan)
    if out.error is None and not nan:
        o = gv.clamp(1e-3, 1 - 1e-3)
        expect = -(o * o.log() + (1 - o) * (1 - o).log()).sum() / max(o.numel(), 1)
        assert_close(out.value, expect, tol, "opacity_entropy_loss")
        backward_ok(out.value, [g], None, "opacity_entropy_loss")
    target = torch.rand(shape, generator=gen, dtype=torch.float64)
    out = call(lambda: pm.mask_bce_loss(g, target, convention=convention), ["opacity", "mask", "convention"],
               must_fail="convention" if convention == "bogus" else None, may_fail=nan or "mixed dtypes")
    if out.error is None and not nan:
        o = gv.reshape(-1).clamp(1e-3, 1 - 1e-3)
        t = target.reshape(-1) if convention == "instant-nsr-pl" else (target.reshape(-1) > 0.5).double()
        expect = -(t * o.log() + (1 - t) * (1 - o).log()).mean() if o.numel() else torch.tensor(0.0,
                                                                                                 dtype=torch.float64)
        assert_close(out.value, expect, tol, "mask_bce_loss")
        backward_ok(out.value, [g], None, "mask_bce_loss")


@SETTINGS
@given(n=st.sampled_from([0, 1, 7]), D=st.integers(1, 4), dtype=st.sampled_from(FLOATS),
       norm=st.sampled_from(["l1", "l2", "l3"]), scale=st.sampled_from([1e-3, 1.0, 1e3]),
       misuse=st.sampled_from(["none", "none", "no_grad_x", "no_graph", "wrong_shape"]), seed=st.integers(0, 2**16))
def test_sdf_derivative_terms(n, D, dtype, norm, scale, misuse, seed):
    """sdf_gradient, directional_divergence and laplacian_divergence on the quadratic
    u(x) = 1/2 x^T A x + b.x, whose gradient A x + b and Hessian A are known in closed form."""
    gen = torch.Generator().manual_seed(seed)
    A = torch.randn(D, D, generator=gen, dtype=torch.float64) * scale
    # The quadratic the test differentiates has the coefficients rounded to `dtype`: the oracle uses
    # those, not the float64 ones (in float16 they differ by 1e-3, more than the divergence itself
    # can be where g.Ag cancels).
    A = (0.5 * (A + A.T)).to(dtype).double()
    bvec = torch.randn(D, generator=gen, dtype=torch.float64).to(dtype).double()
    x64 = torch.randn(n, D, generator=gen, dtype=torch.float64)
    x = x64.to(dtype).requires_grad_(misuse != "no_grad_x")
    xv = x.detach().double()
    names_g = ["sdf", "x"]
    if misuse == "no_grad_x":
        sdf = (0.5 * (x.double() @ A * x.double()).sum(-1) + x.double() @ bvec).to(dtype)
        call(lambda: pm.sdf_gradient(sdf, x), names_g, must_fail="x does not require grad")
        grad = torch.zeros(n, D, dtype=dtype)
    else:
        Ad, bd = A.to(dtype), bvec.to(dtype)
        sdf = 0.5 * ((x @ Ad) * x).sum(-1) + x @ bd
        out = call(lambda: pm.sdf_gradient(sdf, x), names_g, may_fail="empty sample set" if n == 0 else None)
        if out.error is not None:
            return
        grad = out.value
        if misuse == "no_graph":
            grad = grad.detach()
        elif misuse == "wrong_shape":
            grad = grad[..., :1].expand(n, D + 1) if D >= 1 else grad
        assert_close(grad if misuse == "none" else out.value, xv @ A + bvec, 10 * tol_of(dtype), "sdf_gradient",
                     scale=None)
    bad = {"no_grad_x": "x does not require grad", "no_graph": "grad without graph",
           "wrong_shape": "grad of another shape"}.get(misuse)
    bad = bad or ("norm" if norm == "l3" else None)
    g = xv @ A + bvec
    names = ["x", "grad", "norm"]
    if n and float((g @ A).abs().max()) > torch.finfo(dtype).max / 10:
        return  # the Hessian-vector product itself overflows this dtype: nothing to compare
    out = call(lambda: pm.directional_divergence(x, grad, norm=norm), names, must_fail=bad)
    if out.error is None:
        div = ((g @ A) * g).sum(-1) / (g.square().sum(-1) + 1e-5)
        e = (div.abs() if norm == "l1" else div.square()).sum() / max(n, 1)
        # div = n.An with n = g/|g|: rounding errors scale with |A| (its largest possible value),
        # not with div, which cancels to far below it for some directions
        top = float(torch.linalg.eigvalsh(A).abs().max()) if D else 0.0
        assert_close(out.value, e, 100 * tol_of(dtype), "directional_divergence",
                     scale=top if norm == "l1" else top * top)
        assert torch.isfinite(out.value)
    out = call(lambda: pm.laplacian_divergence(x, grad, norm=norm), names, must_fail=bad)
    if out.error is None:
        tr = torch.full((n,), float(torch.trace(A)), dtype=torch.float64)
        e = (tr.abs() if norm == "l1" else tr.square()).clamp(0.1, 50).sum() / max(n, 1)
        assert_close(out.value, e, 100 * tol_of(dtype), "laplacian_divergence")
        assert torch.isfinite(out.value)


# ------------------------------------------------------------------------------------------------
# Learnable Chamfer Distance


@SETTINGS
@given(pair=cloud_pairs(D=3, max_n=12), reduction=st.sampled_from(["mean", None]), step=st.booleans())
def test_lcd_loss(pair, reduction, step):
    x, y, invalid, questionable = build_pair(*pair)
    torch.manual_seed(0)
    net = pm.LCDWeightNet()
    out = call(lambda: pm.lcd_loss(x.arg, y.arg, net, x.lengths_arg, y.lengths_arg, reduction=reduction),
               ["gt", "rec", "weight_net", "gt_lengths", "rec_lengths", "reduction"],
               must_fail=invalid, may_fail=questionable)
    if out.error is not None:
        return
    value = out.value
    empties = empty_pairs(x, y)
    B = len(x.lengths)
    net64 = copy.deepcopy(net).double()
    gv, rv = x.values, y.values
    valid_g = torch.arange(gv.shape[1])[None] < torch.tensor(x.lengths)[:, None]
    valid_r = torch.arange(rv.shape[1])[None] < torch.tensor(y.lengths)[:, None]
    with torch.no_grad():
        w_g, w_r = net64(torch.where(valid_g[..., None], gv, 0.0), torch.where(valid_r[..., None], rv, 0.0),
                         valid_g, valid_r)
    expect = torch.full((B,), float("nan"), dtype=torch.float64)
    for b in range(B):
        if b in empties:
            continue
        n, m = x.lengths[b], y.lengths[b]
        d = ref.pairwise(gv[b, :n], rv[b, :m])
        expect[b] = 0.5 * ((w_g[b, :n] * d.min(1).values.sqrt()).sum() + (w_r[b, :m] * d.min(0).values.sqrt()).sum())
    if reduction == "mean":
        expect = expect.mean()
        if empties:
            assert out.warned(RuntimeWarning)
    else:
        check_nan_warning(out, per_cloud(value, x.unbatched), empties, "lcd_loss")
        value = per_cloud(value, x.unbatched)
    # the weight network runs in float32: its own rounding dominates
    assert_close(value, expect, max(tol_of(x.dtype, y.dtype), 1e-4), "lcd_loss")
    backward_ok(out.value, [x.grad_input, y.grad_input], [x.pad, y.pad], "lcd_loss")
    if step:
        opt = net.optimizer()
        out = call(lambda: pm.lcd_adversarial_step(x.arg, y.arg, net, opt, x.lengths_arg, y.lengths_arg),
                   ["gt", "rec", "weight_net", "optimizer", "gt_lengths", "rec_lengths", "sigma_r", "weight_decay"],
                   may_fail="an empty cloud" if empties else None)
        if out.error is None:
            assert torch.isfinite(out.value)
            assert all(torch.isfinite(p).all() for p in net.parameters()), "non-finite weights after the step"


# ------------------------------------------------------------------------------------------------
# DirDist (DDM)


def ddf_cloud(queries, cloud, K):
    d = ref.pairwise(queries, cloud)
    dist, idx = d.topk(K, dim=1, largest=False)
    w = 1.0 / (dist + 1e-8)
    w = w / w.sum(1, keepdim=True)
    h = (w[..., None] * (queries[:, None] - cloud[idx])).sum(1)
    return torch.cat([h, (h + 1e-10).norm(dim=-1, keepdim=True)], dim=-1)


def kth_gap_ok(queries, cloud, K):
    """True when the K-th and (K+1)-th nearest distances differ (the K nearest are well defined)."""
    if cloud.shape[0] <= K:
        return True
    d = ref.pairwise(queries, cloud).sort(1).values
    return bool(((d[:, K] - d[:, K - 1]) > 1e-9 * (d[:, K] + 1e-300)).all())


@SETTINGS
@given(pair=cloud_pairs(D=3, max_n=10), K=st.sampled_from([1, 2, 5, 0]), repeat=st.sampled_from([1, 2]),
       std=st.sampled_from([0.05, 0.0, -1.0]), beta=st.sampled_from([3.0, 0.0]), weighted=st.booleans(),
       seed=st.integers(0, 2**16))
def test_ddm_p2p(pair, K, repeat, std, beta, weighted, seed):
    x, y, invalid, questionable = build_pair(*pair)
    few = any(min(x.lengths[b], y.lengths[b]) < K for b in range(len(x.lengths)))
    out = call(lambda: pm.ddm_p2p(x.arg, y.arg, x.lengths_arg, y.lengths_arg, K=K, repeat=repeat, std=std, beta=beta,
                                  weighted=weighted, generator=torch.Generator().manual_seed(seed)),
               ["source", "target", "source_lengths", "target_lengths", "K", "repeat", "std", "beta", "weighted",
                "generator"],
               must_fail=invalid or ("K < 1" if K < 1 else None) or ("std < 0" if std < 0 else None)
               or ("a cloud with fewer than K points" if few else None),
               may_fail=questionable)
    if out.error is not None:
        return
    value = out.value
    assert torch.isfinite(value).all(), f"ddm_p2p is not finite: {value}"
    backward_ok(value, [x.grad_input, y.grad_input], [x.pad, y.pad], "ddm_p2p")
    if x.form == "list" or x.dtype != y.dtype:
        return
    # oracle: the same queries (the same generator draws), fields from float64 brute force
    B, M, D = y.values.shape
    g = torch.Generator().manual_seed(seed)
    # as ddm_p2p: noise drawn in the compute dtype (float32 at least), added to the targets in it
    tb = y.values.to(y.dtype).to(torch.promote_types(y.dtype, torch.float32))
    noise = (torch.randn((B, M, repeat, D), generator=g, dtype=tb.dtype) * std)
    per = []
    for b in range(B):
        n, m = x.lengths[b], y.lengths[b]
        around = (tb[b, :m].unsqueeze(1) + noise[b, :m]).reshape(-1, D).double()
        queries = torch.cat([around, x.values[b, :n].to(y.dtype).double()])
        s, t = x.values[b, :n], y.values[b, :m]
        if not (kth_gap_ok(queries, s, K) and kth_gap_ok(queries, t, K)):
            return  # ties at the K-th neighbour: the field is not well defined
        fs, ft = ddf_cloud(queries, s, K), ddf_cloud(queries, t, K)
        e = (fs[:, 3] - ft[:, 3]).abs() + (fs[:, :3] - ft[:, :3]).abs().sum(-1)
        w = torch.exp(-beta * e) if weighted else torch.ones_like(e)
        per.append((w * e).mean())
    expect = torch.stack(per)
    expect = expect[0] if x.unbatched else expect.mean()
    finite = torch.nan_to_num(x.values.double(), nan=0.0, posinf=0.0, neginf=0.0)  # padding may hold NaN
    assert_close(value, expect, 10 * tol_of(x.dtype), "ddm_p2p", scale=3 * finite.abs().max().item())


@st.composite
def two_meshes(draw):
    return draw(mesh_specs(batched=False)), draw(mesh_specs(batched=False))


@SETTINGS
@given(meshes=two_meshes(), N=st.sampled_from([0, 3, 5, 12]), K=st.sampled_from([1, 5]),
       num_queries=st.sampled_from([1, 16, 0]), seed=st.integers(0, 2**16))
def test_ddm_meshes(meshes, N, K, num_queries, seed):
    """ddm_m2p and ddm_m2m: finite values and gradients, and m2m against brute-force closest points."""
    a, b = make_mesh(meshes[0]), make_mesh(meshes[1])
    gen = torch.Generator().manual_seed(seed)
    points = (torch.rand(N, 3, generator=gen, dtype=torch.float64) * 2 - 1).to(a.dtype) * meshes[0]["scale"]
    empty = lambda m: m.f64[0].shape[0] == 0  # noqa: E731
    out = call(lambda: pm.ddm_m2p(a.verts, a.faces, points, K=K, generator=torch.Generator().manual_seed(seed)),
               ["verts", "faces", "points", "K", "repeat", "std", "beta", "generator"],
               must_fail=a.invalid or ("no faces" if empty(a) else None) or ("fewer than K points" if N < K else None),
               may_fail=a.questionable)
    if out.error is None:
        assert torch.isfinite(out.value), f"ddm_m2p is not finite: {out.value}"
        backward_ok(out.value, [a.grad_input], None, "ddm_m2p")

    def positive_area(m):
        v, f = m.v64[0], m.f64[0]
        return f.shape[0] and bool((face_areas64(v, f) > 0).any())

    out = call(lambda: pm.ddm_m2m(a.verts, a.faces, b.verts, b.faces, num_queries=num_queries,
                                  generator=torch.Generator().manual_seed(seed)),
               ["src_verts", "src_faces", "tgt_verts", "tgt_faces", "num_queries", "std", "generator"],
               must_fail=a.invalid or b.invalid or ("no faces" if empty(a) or empty(b) else None)
               or ("num_queries < 1" if num_queries < 1 else None),
               may_fail=a.questionable or b.questionable or (None if positive_area(b) else "target without area")
               or (f"mixed dtypes {a.dtype}, {b.dtype}" if a.dtype != b.dtype else None))
    if out.error is None:
        assert torch.isfinite(out.value), f"ddm_m2m is not finite: {out.value}"
        backward_ok(out.value, [a.grad_input, b.grad_input], None, "ddm_m2m")


# ------------------------------------------------------------------------------------------------
# Rasterisation and normal maps


@st.composite
def raster_cases(draw):
    ms = draw(mesh_specs())
    ms["scale"] = draw(st.sampled_from([0.5, 0.9, 1e-3, 1e3]))
    return dict(
        mesh=ms,
        camera=draw(st.sampled_from(["ortho", "ortho", "perspective"])),
        angles=draw(st.lists(st.sampled_from([0.0, 90.0, 33.0, 180.0]), min_size=1, max_size=3)),
        size=draw(st.one_of(st.integers(1, 12), st.tuples(st.integers(1, 10), st.integers(1, 10)),
                            st.sampled_from([0, -3, (4, 0)]))),
        space=draw(st.sampled_from(["view", "world"])),
        shading=draw(st.sampled_from(["smooth", "flat"])),
        weighting=draw(st.sampled_from(["area", "angle"])),
        own_normals=draw(st.booleans()),
    )


def cameras_for(case):
    if case["camera"] == "ortho":
        return pm.Cameras.orthographic(pm.rotation_y(case["angles"]))
    a = torch.tensor(case["angles"], dtype=torch.float64) * math.pi / 180
    eyes = 3.0 * torch.stack([torch.sin(a), 0.3 * torch.ones_like(a), torch.cos(a)], 1)
    return pm.Cameras.perspective(pm.look_at(eyes), fov_y=60.0, near=0.5, far=10.0)


def valid_size(size):
    s = (size, size) if isinstance(size, int) else size
    return all(v >= 1 for v in s)


def near_edge(clip, faces, H, W, margin=1e-6):
    """(H, W) pixels whose centre lies within ``margin`` (barycentric units) of some face's edge or
    whose depth is near a tie: the oracle states these may differ from the kernel."""
    w = clip[:, 3]
    sx = (clip[:, 0] / w + 1) * (W / 2) - 0.5
    sy = (1 - clip[:, 1] / w) * (H / 2) - 0.5
    rows, cols = torch.meshgrid(torch.arange(H, dtype=torch.float64), torch.arange(W, dtype=torch.float64),
                                indexing="ij")
    px, py = cols.reshape(-1, 1), rows.reshape(-1, 1)
    f = faces
    x, y = sx[f], sy[f]

    def edge(a, b):
        return (x[:, b] - x[:, a]) * (py - y[:, a]) - (y[:, b] - y[:, a]) * (px - x[:, a])

    e = torch.stack([edge(1, 2), edge(2, 0), edge(0, 1)], dim=-1)
    area = e.sum(-1, keepdim=True)
    lam = e / torch.where(area == 0, 1.0, area)
    close = ((lam.abs() < margin) & (area != 0)).any(-1) | (area[..., 0].abs() < 1e-9)
    return close.any(-1).view(H, W)


@SETTINGS
@given(case=raster_cases())
def test_rasterize_and_render_normals(case):
    note(str({k: v for k, v in case.items() if k != "mesh"}))
    mesh = make_mesh(case["mesh"])
    cams = cameras_for(case)
    size = case["size"]
    bad_size = None if valid_size(size) else "bad image_size"
    names = ["verts", "faces", "cameras", "image_size", "face_lengths"]
    out = call(lambda: pm.rasterize(mesh.verts, mesh.faces, cams, size, mesh.face_lengths), names,
               must_fail=mesh.invalid or bad_size, may_fail=mesh.questionable)
    if out.error is not None:
        return
    frags = out.value
    H, W = (size, size) if isinstance(size, int) else size
    C = len(cams)
    B = len(mesh.v64)
    face, bary, depth = (per_cloud(t, mesh.unbatched) for t in frags)
    assert face.shape == (B, C, H, W) and bary.shape == (B, C, H, W, 3) and depth.shape == (B, C, H, W)
    for b in range(B):
        v, f = mesh.v64[b], mesh.f64[b]
        if f.shape[0] == 0:
            assert (face[b] == -1).all()
            continue
        clip = cams.clip(v[None])[0]  # (C, V, 4)
        for c in range(C):
            e_face, e_bary, e_depth = ref.rasterize(clip[c], f, H, W)
            fuzzy = near_edge(clip[c], f, H, W)
            same = (face[b, c] == e_face) | fuzzy
            if not same.all():
                # an exact depth tie may also differ only in floating point: accept equal depths
                diff = ~same
                assert_close(depth[b, c][diff], e_depth[diff], 1e-5, f"rasterize: other face at equal depth, view {c}",
                             scale=1)
            agree = (face[b, c] == e_face) & (e_face >= 0) & ~fuzzy
            assert_close(bary[b, c][agree], e_bary[agree], 1e-4, f"barycentric weights, view {c}", scale=1)
            assert_close(depth[b, c][agree], e_depth[agree], 1e-5, f"depth, view {c}", scale=1)
            assert (torch.isinf(depth[b, c]) == (face[b, c] < 0)).all(), "background depth must be +inf"
    # normal maps
    normals = None
    if case["own_normals"] and case["shading"] == "smooth":
        normals = torch.randn(tuple(mesh.grad_input.shape if mesh.grad_input is not None else
                                    (B, mesh.v64[0].shape[0], 3)), dtype=mesh.dtype)
        normals = normals[0] if mesh.unbatched else normals
        if not isinstance(mesh.verts, torch.Tensor):
            normals = None
    out = call(lambda: pm.render_normals(mesh.verts, mesh.faces, cams, size, normals=normals, space=case["space"],
                                         shading=case["shading"], weighting=case["weighting"],
                                         face_lengths=mesh.face_lengths),
               names + ["normals", "space", "shading", "weighting"], may_fail=mesh.questionable)
    if out.error is not None:
        return
    maps = out.value
    n, mask = per_cloud(maps.normals, mesh.unbatched), per_cloud(maps.mask, mesh.unbatched)
    assert torch.isfinite(n).all(), "non-finite normals in the normal map"
    assert torch.equal(mask, face >= 0), "mask is not face >= 0"
    length = n.double().norm(dim=-1)
    unit_or_zero = ((length - 1).abs() < 10 * tol_of(mesh.dtype)) | (length == 0)
    assert unit_or_zero.all(), f"normal-map vectors are neither unit nor zero: {length[~unit_or_zero]}"
    assert (length[~mask] == 0).all(), "background pixels must be zero"
    if case["shading"] == "flat" and case["space"] == "world":
        for b in range(B):
            v, f = mesh.v64[b], mesh.f64[b]
            if f.shape[0] == 0:
                continue
            fn = F.normalize(torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1), dim=1)
            seen = face[b] >= 0
            assert_close(n[b][seen], fn[face[b][seen]], 10 * tol_of(mesh.dtype), "flat world normals", scale=1)
    backward_ok(maps.normals, [mesh.grad_input], None, "render_normals")
    out = call(lambda: pm.vertex_normals(mesh.verts, mesh.faces, case["weighting"], mesh.face_lengths),
               ["verts", "faces", "weighting", "face_lengths"], may_fail=mesh.questionable)
    if out.error is None:
        vn = per_cloud(out.value, mesh.unbatched)
        assert torch.isfinite(vn).all(), "non-finite vertex normals"


# ------------------------------------------------------------------------------------------------
# DTU's greedy reduction, the metric accumulator


@SETTINGS
@given(spec=cloud_specs(1, 3, max_n=40), radius=st.sampled_from([0.1, 0.5, 2.0, 0.0, -1.0, float("inf")]))
def test_greedy_radius_downsample(spec, radius):
    spec = dict(spec, form="single", lengths_kind="none", layout=spec["layout"] if spec["layout"] != "expanded"
                else "contiguous")
    c = make_cloud(spec)
    r = radius * spec["scale"] if math.isfinite(radius) else radius
    out = call(lambda: pm.greedy_radius_downsample(c.arg, r), ["points", "radius"],
               must_fail=c.invalid or ("radius not a positive finite number" if not (0 < r < math.inf) else None))
    if out.error is not None:
        return
    keep = out.value
    p = c.values[0]
    expect = torch.zeros(p.shape[0], dtype=torch.bool)
    kept = []
    d = ref.pairwise(p, p).sqrt() if p.shape[0] else None
    for i in range(p.shape[0]):
        if not any(float(d[i, j]) <= r for j in kept):
            kept.append(i)
            expect[i] = True
    if c.dtype != torch.float64:  # distances within rounding of the radius may go either way
        amb = (d - r).abs() <= 4 * tol_of(c.dtype) * r if p.shape[0] else None
        if p.shape[0] and bool(amb.any()):
            return
    assert torch.equal(keep.cpu(), expect), f"kept {keep.nonzero()[:, 0].tolist()}, expected {kept}"


@SETTINGS
@given(pair=cloud_pairs(max_n=12), taus=st.sampled_from([(0.01,), (0.5, 1.0)]))
def test_point_cloud_metrics(pair, taus):
    x, y, invalid, questionable = build_pair(*pair)
    acc = pm.PointCloudMetrics(taus=list(taus))
    out = call(lambda: acc.update(x.arg, y.arg, x.lengths_arg, y.lengths_arg),
               ["pred", "gt", "pred_lengths", "gt_lengths"], must_fail=invalid, may_fail=questionable)
    if out.error is not None:
        return
    res = call(lambda: acc.compute(), ["pred", "gt"]).value
    skipped = len(empty_pairs(x, y))
    assert float(res.get("skipped", skipped)) == skipped, f"skipped {res}"
    good = [b for b in range(len(x.lengths)) if b not in empty_pairs(x, y)]
    if good:
        e = ref.chamfer(x.values, y.values, False, True, x.lengths, y.lengths)[good].mean()
        got = torch.tensor(float(res["CD-L1"]), dtype=torch.float64)
        assert_close(got, e, tol_of(x.dtype, y.dtype), "accumulated CD-L1")
