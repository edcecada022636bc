"""knn_points against the float64 brute-force reference, scipy, and the CUDA plan run on the CPU."""

import numpy as np
import pytest
import torch
from conftest import ragged
from scipy.spatial import cKDTree

import pointmetrics as pm
from pointmetrics import reference

ops = torch.ops.pointmetrics
testing = torch.ops.pointmetrics_testing


def on(device, *tensors):
    return tuple(None if t is None else t.to(device) for t in tensors)


def assert_matches_reference(x, y, K, xl, yl, norm, device="cpu"):
    """knn_points on `device` against the reference on the CPU inputs."""
    got = pm.knn_points(*on(device, x, y), K=K, x_lengths=on(device, xl)[0], y_lengths=on(device, yl)[0], norm=norm)
    want_d, want_i = reference.knn_points(x, y, K, xl, yl, norm)
    assert torch.equal(got.idx.cpu(), want_i)
    torch.testing.assert_close(got.dists.cpu(), want_d, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("D", [1, 2, 3, 5])
@pytest.mark.parametrize("K", [1, 2, 5, 16])
@pytest.mark.parametrize("norm", [1, 2])
def test_ragged_batches_match_reference(gen, device, D, K, norm):
    x, xl = ragged(gen, 4, 300, D)
    y, yl = ragged(gen, 4, 200, D, low=1)
    assert_matches_reference(x, y, K, xl, yl, norm, device)


def clouds(kind, gen, n, dtype=torch.float64):
    """Point sets that push the search into each of its paths."""
    if kind == "uniform":
        return torch.rand(n, 3, generator=gen, dtype=dtype)
    if kind == "sphere":  # a surface: the grid refines its cells
        v = torch.randn(n, 3, generator=gen, dtype=dtype)
        return v / v.norm(dim=1, keepdim=True)
    if kind == "clusters":  # tight clusters far apart: the grid is crowded, the kd-tree takes over
        centres = torch.randint(0, 4, (n, 1), generator=gen).to(dtype) * 10
        return centres + 1e-3 * torch.randn(n, 3, generator=gen, dtype=dtype)
    if kind == "line":
        return torch.rand(n, 1, generator=gen, dtype=dtype) * torch.tensor([[1.0, 2.0, 3.0]], dtype=dtype)
    if kind == "grid":  # integer lattice: many exactly tied distances
        return torch.randint(0, 6, (n, 3), generator=gen).to(dtype)
    raise ValueError(kind)


@pytest.mark.parametrize("target", ["uniform", "sphere", "clusters", "line", "grid"])
@pytest.mark.parametrize("query", ["uniform", "sphere", "far"])
@pytest.mark.parametrize("K", [1, 4])
def test_distributions_match_reference(gen, device, target, query, K):
    y = clouds(target, gen, 3000)
    if query == "far":  # mostly near the data, some far away: the deferred second pass runs
        x = torch.cat(
            [
                y[:1500] + 0.01 * torch.randn(1500, 3, generator=gen, dtype=y.dtype),
                50 * torch.randn(500, 3, generator=gen, dtype=y.dtype),
            ]
        )
    else:
        x = clouds(query, gen, 2000)
    assert_matches_reference(x[None], y[None], K, None, None, 2, device)


@pytest.mark.parametrize("target", ["uniform", "sphere", "clusters", "grid"])
@pytest.mark.parametrize("far_queries", [3, 400])
def test_cuda_plan_on_cpu_matches_cpu_plan(gen, target, far_queries):
    """The CUDA backend's plan (ATen-built grids and trees, one decision per batch) gives the same
    neighbours as the CPU plan; few and many far queries take the grid fallback and the tree."""
    y = torch.stack([clouds(target, gen, 4000), clouds("uniform", gen, 4000)]).float()
    x = torch.cat([clouds("uniform", gen, 3000), 100 * torch.randn(far_queries, 3, generator=gen)])
    x = torch.stack([x, x.flip(0)]).float()
    xl = torch.tensor([x.shape[1], x.shape[1] - 7])
    yl = torch.tensor([4000, 3111])
    for K in (1, 3, 20):
        fast = ops.knn(x, y, xl, yl, K, 2)
        portable = testing.knn_portable(x, y, xl, yl, K, 2)
        assert torch.equal(fast[1], portable[1])
        assert torch.equal(fast[0], portable[0])


def test_matches_scipy_on_1e5_points(gen, device):
    x = torch.rand(100_000, 3, generator=gen)
    y = torch.rand(100_000, 3, generator=gen)
    got = pm.knn_points(*on(device, x, y), K=8)
    got = type(got)(*(None if t is None else t.cpu() for t in got))
    d, i = cKDTree(y.double().numpy()).query(x.double().numpy(), k=8)
    np.testing.assert_allclose(got.dists.sqrt().numpy(), d, rtol=1e-5, atol=1e-7)
    # Indices agree except where float32 distances tie: check the chosen points are as close.
    chosen = (x[:, None, :].double() - y.double()[got.idx]).norm(dim=-1).numpy()
    np.testing.assert_allclose(chosen, d, rtol=1e-5, atol=1e-7)
    assert (got.idx.numpy() == i).mean() > 0.999


def test_ties_go_to_the_smallest_index(gen, device):
    y = torch.tensor([[0.0, 0, 0], [1, 0, 0], [0, 0, 0], [-1, 0, 0], [1, 0, 0]], dtype=torch.float64)
    x = torch.tensor([[0.0, 0, 0], [0.5, 0, 0], [2, 0, 0]], dtype=torch.float64)
    r = pm.knn_points(*on(device, x, y), K=3)
    assert r.idx.tolist() == [[0, 2, 1], [0, 1, 2], [1, 4, 0]]
    # duplicated targets: every copy is an exact tie
    y = torch.rand(50, 3, generator=gen, dtype=torch.float64).repeat(20, 1)
    x = torch.rand(200, 3, generator=gen, dtype=torch.float64)
    assert_matches_reference(x[None], y[None], 3, None, None, 2, device)


def test_fewer_targets_than_k_and_empty_clouds(device):
    x = torch.rand(2, 5, 3, dtype=torch.float64).to(device)
    y = torch.rand(2, 4, 3, dtype=torch.float64).to(device)
    xl, yl = torch.tensor([5, 3], device=device), torch.tensor([2, 0], device=device)
    r = pm.knn_points(x, y, K=6, x_lengths=xl, y_lengths=yl)
    assert (r.idx[0, :, 2:] == -1).all() and (r.dists[0, :, 2:] == 0).all()
    assert (r.idx[1] == -1).all() and (r.dists[1] == 0).all()
    assert (r.idx[0, :, :2] >= 0).all()
    r = pm.knn_points(x[:, :0], y, K=2)
    assert r.idx.shape == (2, 0, 2)


def test_single_cloud_and_list_inputs(gen, device):
    x = torch.rand(30, 3, generator=gen, dtype=torch.float64).to(device)
    y = torch.rand(40, 3, generator=gen, dtype=torch.float64).to(device)
    single = pm.knn_points(x, y, K=2)
    assert single.idx.shape == (30, 2)
    listed = pm.knn_points([x, x[:10]], [y, y[:5]], K=2)
    assert torch.equal(listed.idx[0], single.idx)
    assert (listed.idx[1, 10:] == -1).all()


def test_return_nn_gathers_neighbours(gen, device):
    x = torch.rand(2, 20, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64)
    r = pm.knn_points(*on(device, x, y), K=3, return_nn=True)
    knn, idx, dists = r.knn.cpu(), r.idx.cpu(), r.dists.cpu()
    expect = torch.stack([y[b][idx[b]] for b in range(2)])
    assert torch.equal(knn, expect)
    torch.testing.assert_close(((x[:, :, None] - knn) ** 2).sum(-1), dists)


def test_knn_gather_masks_missing_neighbours_and_nan_padding(gen, device):
    y = torch.rand(2, 6, 3, generator=gen, dtype=torch.float64)
    y[1, 2:] = float("nan")  # padding of a cloud with 2 points
    x = torch.rand(2, 4, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    x, y = x.detach().to(device).requires_grad_(), y.to(device)
    r = pm.knn_points(x, y, K=3, y_lengths=torch.tensor([6, 2], device=device))
    assert torch.isfinite(r.dists).all()
    r.dists.sum().backward()
    assert torch.isfinite(x.grad).all()
    idx = r.idx.clone()
    idx[1, 0, 1] = 4  # past y_lengths[1] = 2
    gathered = pm.knn_gather(y, idx, torch.tensor([6, 2], device=device))
    assert (gathered[1, :, 2] == 0).all() and (gathered[1, 0, 1] == 0).all()
    assert torch.isfinite(gathered).all()
    assert torch.equal(gathered[0].cpu(), y[0].cpu()[r.idx[0].cpu()])


def test_noncontiguous_and_expanded_inputs(gen, device):
    base = torch.rand(3, 50, 6, generator=gen, dtype=torch.float64).to(device)
    x = base[:, :, ::2]  # non-contiguous
    y = torch.rand(1, 40, 3, generator=gen, dtype=torch.float64).to(device).expand(3, 40, 3)
    a = pm.knn_points(x, y, K=4)
    b = pm.knn_points(x.contiguous(), y.contiguous(), K=4)
    assert torch.equal(a.idx, b.idx) and torch.equal(a.dists, b.dists)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
def test_low_precision_inputs_are_computed_in_float32(gen, device, dtype):
    x = torch.rand(1, 200, 3, generator=gen).to(dtype)
    y = torch.rand(1, 300, 3, generator=gen).to(dtype)
    r = pm.knn_points(*on(device, x, y), K=2)
    assert r.dists.dtype == torch.float32
    want_d, _ = reference.knn_points(x.double(), y.double(), 2)
    torch.testing.assert_close(r.dists.cpu().double(), want_d, rtol=1e-5, atol=1e-7)


def test_same_output_on_every_run(gen, device):
    x = torch.rand(1, 5000, 3, generator=gen).to(device)
    y = torch.rand(1, 5000, 3, generator=gen).to(device)
    first = pm.knn_points(x, y, K=4)
    for _ in range(3):
        again = pm.knn_points(x, y, K=4)
        assert torch.equal(first.idx, again.idx) and torch.equal(first.dists, again.dists)


@pytest.mark.parametrize("norm", [1, 2])
def test_gradcheck_and_gradgradcheck(gen, device, norm):
    # Finite differences (step 1e-6) must not cross a kink: |x_d - y_d| at 0 for the L1 norm, or a
    # change of neighbours. Draw until every coordinate difference and every gap between the
    # K-th and (K+1)-th distances exceeds 1e-4 (a few draws at most).
    for _ in range(100):
        x = torch.rand(2, 12, 3, generator=gen, dtype=torch.float64)
        y = torch.rand(2, 9, 3, generator=gen, dtype=torch.float64)
        d = ((x[:, :, None] - y[:, None]) ** 2).sum(-1) if norm == 2 else (x[:, :, None] - y[:, None]).abs().sum(-1)
        gaps = d.sort(-1).values.diff(dim=-1)
        if (x[:, :, None] - y[:, None]).abs().min() > 1e-4 and gaps.min() > 1e-4:
            break
    x, y = x.to(device).requires_grad_(), y.to(device).requires_grad_()
    xl, yl = torch.tensor([12, 7], device=device), torch.tensor([9, 4], device=device)

    def f(a, b):
        return pm.knn_points(a, b, K=3, x_lengths=xl, y_lengths=yl, norm=norm).dists

    assert torch.autograd.gradcheck(f, (x, y))
    if norm == 2:
        assert torch.autograd.gradgradcheck(f, (x, y))


def test_padding_receives_no_gradient(gen, device):
    x = torch.rand(1, 10, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(1, 8, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    x, y = (t.detach().to(device).requires_grad_() for t in (x, y))
    xl, yl = torch.tensor([6], device=device), torch.tensor([5], device=device)
    d = pm.knn_points(x, y, K=2, x_lengths=xl, y_lengths=yl).dists
    d.sum().backward()
    assert (x.grad[0, 6:] == 0).all() and (y.grad[0, 5:] == 0).all()
    assert (x.grad[0, :6] != 0).any()


@pytest.mark.parametrize("op", [ops.knn, testing.knn_portable], ids=["knn", "knn_portable"])
def test_opcheck(gen, op):
    # A search has no gradient (knn_points recomputes distances in torch): inputs without grad.
    x = torch.rand(2, 20, 3, generator=gen)
    y = torch.rand(2, 15, 3, generator=gen)
    samples = [
        (x, y, torch.tensor([20, 11]), torch.tensor([15, 2]), 3, 2),
        (x.double(), y.double(), torch.tensor([20, 0]), torch.tensor([15, 15]), 1, 1),
        (
            torch.rand(1, 9, 5, generator=gen),
            torch.rand(1, 4, 5, generator=gen),
            torch.tensor([9]),
            torch.tensor([4]),
            6,
            2,
        ),
    ]
    for args in samples:
        torch.library.opcheck(op, args)


def test_torch_compile(gen, device):
    x = torch.rand(2, 64, 3, generator=gen).to(device)
    y = torch.rand(2, 48, 3, generator=gen).to(device)
    compiled = torch.compile(lambda a, b: pm.knn_points(a, b, K=2).dists.sum(), backend="aot_eager")
    torch.testing.assert_close(compiled(x, y), pm.knn_points(x, y, K=2).dists.sum())


def float32_nearest(x, y, norm):
    """Brute-force K=1 in float32 with the kernels' arithmetic (differences, then the three terms
    added left to right, each operation rounded to float32), ties to the smallest index."""
    diff = x[:, None, :] - y[None, :, :]
    terms = diff * diff if norm == 2 else diff.abs()
    d = (terms[..., 0] + terms[..., 1]) + terms[..., 2]
    return d.min(1).values, d.argmin(1)


@pytest.mark.parametrize("norm", [1, 2])
@pytest.mark.parametrize("offset", [0.0, 1e4])
def test_float32_warm_starts_keep_the_exact_nearest(gen, device, norm, offset):
    """Each query's search is bounded by the previous query's neighbour (triangle inequality, with
    slack for float32 rounding): near-duplicates, exact ties and large offsets, where float32 rounds
    coarsely, must still give the brute-force float32 answer."""
    y = torch.rand(3000, 3, generator=gen, dtype=torch.float64)
    y[1000:1100] = y[:100]  # exact duplicates: ties to the smaller index
    x = torch.cat([y[:1500] + 1e-6 * torch.randn(1500, 3, generator=gen, dtype=torch.float64),
                   torch.rand(2500, 3, generator=gen, dtype=torch.float64)])
    x, y = (x + offset).float(), (y + offset).float()
    got = pm.knn_points(*on(device, x, y), K=1, norm=norm)
    want_d, want_i = float32_nearest(x, y, norm)
    assert torch.equal(got.idx[:, 0].cpu(), want_i)
    assert torch.equal(got.dists[:, 0].cpu(), want_d)


def test_brute_nearest_bench_helper(gen):
    """scripts/bench_nn.py's distance-rate helper computes what it claims (else its rate means nothing)."""
    x, y = torch.rand(50, 3, generator=gen), torch.rand(700, 3, generator=gen)
    assert torch.equal(testing.brute_nearest(x, y), float32_nearest(x, y, 2)[0])
    with pytest.raises(RuntimeError, match="float32"):
        testing.brute_nearest(x.double(), y)


def test_cuda_brute_force_choice_keeps_the_gpu_busy():
    """The CUDA backend's brute-force pass runs one block per 256 queries: it must not take a few
    queries against many targets (one busy multiprocessor of 132 for the whole scan), but keep
    the small and the batched cases that it answers fastest (GPU issue: N = 256 against 1e6)."""
    uses_brute = torch.ops.pointmetrics_testing.knn_uses_brute_force
    assert not uses_brute(1, 256, 10**6, 132)  # under the pair limit, but a single block
    assert not uses_brute(1, 10_000, 10_000, 132)  # 40 blocks scanning 10k targets each
    assert uses_brute(32, 2048, 2048, 132)  # Chamfer in training: 256 blocks
    assert uses_brute(1, 2048, 2048, 132)  # a short scan per thread
    assert uses_brute(1, 100_000, 2000, 132)
    assert not uses_brute(64, 2**15, 2**14, 132)  # past the pair limit


def test_results_that_cannot_be_allocated_raise_naming_k():
    """K at the 2^31-slot limit, and results that do not fit in the memory left, are ValueErrors
    naming K, not allocator crashes (found by test_properties: K = 2^31 against an empty cloud)."""
    import resource

    x, y = torch.rand(1, 1, 1), torch.rand(1, 0, 1)
    with pytest.raises(ValueError, match="K="):
        pm.knn_points(x, y, K=2**31)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    used = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
    resource.setrlimit(resource.RLIMIT_AS, (used + (2 << 30), hard))  # 2 GiB left for this call
    try:
        with pytest.raises(ValueError, match="do not fit in memory"):
            pm.knn_points(x, y, K=2**30)  # 12 GiB of results
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
