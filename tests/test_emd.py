"""Earth Mover's Distance against scipy's exact linear_sum_assignment."""

import pytest
import torch
from conftest import ragged
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist

import pointmetrics as pm


def exact(x, y, p):
    cost = cdist(x.double().numpy(), y.double().numpy()) ** p
    rows, cols = linear_sum_assignment(cost)
    return cost[rows, cols].mean()


def check(x, y, p, rel_tol):
    r = pm.earth_movers_distance(x, y, p=p, rel_tol=rel_tol)
    want = exact(x, y, p)
    got = float(r.distance)
    assert got >= want - 1e-12 * max(want, 1)  # a matching can never beat the optimum
    assert got <= want * (1 + rel_tol) + 1e-12  # within the requested accuracy
    assert float(r.lower_bound) <= want + 1e-12 * max(want, 1)  # the certificate is a true lower bound
    assert 0 <= float(r.gap) <= rel_tol + 1e-12
    n = min(len(x), len(y))
    matched = r.assignment[r.assignment >= 0]
    assert len(matched) == n and len(torch.unique(matched)) == n  # one-to-one
    return r, want


def clouds(kind, gen, n, dtype=torch.float64):
    if kind == "uniform":
        return torch.rand(n, 3, generator=gen, dtype=dtype), torch.rand(n, 3, generator=gen, dtype=dtype)
    if kind == "clusters":  # unequal cluster sizes: some points must travel far
        def one():
            centre = torch.randint(0, 4, (n, 1), generator=gen).to(dtype)
            return centre + 0.01 * torch.randn(n, 3, generator=gen, dtype=dtype)
        return one(), one()
    if kind == "duplicates":
        base = torch.rand(n // 10, 3, generator=gen, dtype=dtype)
        return base.repeat(10, 1), torch.rand(n // 10, 3, generator=gen, dtype=dtype).repeat(10, 1)
    if kind == "plane":  # D = 2
        return torch.rand(n, 2, generator=gen, dtype=dtype), torch.rand(n, 2, generator=gen, dtype=dtype)
    if kind == "features":  # D = 5: no tree, full scans
        return torch.rand(n, 5, generator=gen, dtype=dtype), torch.rand(n, 5, generator=gen, dtype=dtype)
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["uniform", "clusters", "duplicates", "plane", "features"])
@pytest.mark.parametrize("p", [1, 2])
def test_matches_exact_assignment(gen, kind, p):
    x, y = clouds(kind, gen, 400)
    r, _ = check(x, y, p, 1e-3)
    assert torch.equal(torch.sort(r.assignment).values, torch.arange(400))  # a permutation


def test_permutation_gives_zero_and_translation_gives_its_length(gen):
    x = torch.rand(500, 3, generator=gen, dtype=torch.float64)
    perm = torch.randperm(500, generator=gen)
    r = pm.earth_movers_distance(x, x[perm])
    assert float(r.distance) == 0.0
    assert torch.equal(perm[r.assignment], torch.arange(500))
    shift = torch.tensor([0.3, -0.4, 0.0], dtype=torch.float64)
    r = pm.earth_movers_distance(x, x + shift, rel_tol=1e-4)
    assert abs(float(r.distance) - 0.5) <= 0.5 * 1e-4
    r2 = pm.earth_movers_distance(x, x + shift, p=2, rel_tol=1e-4)
    assert abs(float(r2.distance) - 0.25) <= 0.25 * 1e-4


@pytest.mark.parametrize("scale", [1e-5, 1e4])
def test_any_coordinate_scale(gen, scale):
    x, y = clouds("uniform", gen, 300)
    check(x * scale + 7 * scale, y * scale + 7 * scale, 1, 1e-3)


def test_unequal_sizes_match_the_smaller_set_once(gen):
    x = torch.rand(300, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(450, 3, generator=gen, dtype=torch.float64)
    r, want = check(x, y, 1, 1e-3)
    assert (r.assignment >= 0).all()
    back, want_back = check(y, x, 1, 1e-3)  # the larger set's extra points are left out
    assert (back.assignment >= 0).sum() == 300
    assert abs(want - want_back) < 1e-12


def test_batches_with_lengths(gen):
    x, xl = ragged(gen, 3, 200, 3, low=50)
    y, yl = ragged(gen, 3, 200, 3, low=50)
    r = pm.earth_movers_distance(x, y, xl, yl, rel_tol=1e-3)
    for b in range(3):
        want = exact(x[b, : xl[b]], y[b, : yl[b]], 1)
        assert want - 1e-12 <= float(r.distance[b]) <= want * (1 + 1e-3) + 1e-12
        assert (r.assignment[b, xl[b] :] == -1).all()
        assert (r.assignment[b, : xl[b]] < yl[b]).all()


def test_deterministic(gen):
    x, y = clouds("duplicates", gen, 500, torch.float32)
    first = pm.earth_movers_distance(x, y)
    for _ in range(2):
        again = pm.earth_movers_distance(x, y)
        assert torch.equal(first.assignment, again.assignment) and torch.equal(first.distance, again.distance)


@pytest.mark.parametrize("p", [1, 2])
def test_gradients_reach_both_sets(gen, p):
    x = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    y = torch.rand(2, 30, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda a, b: pm.earth_movers_distance(a, b, p=p).distance, (x, y))
    pm.earth_movers_distance(x, y, p=p).distance.sum().backward()
    assert (y.grad != 0).any()  # the common copy gives the second set no gradient


def test_gradient_is_finite_for_identical_sets(gen):
    x = torch.rand(40, 3, generator=gen, dtype=torch.float64, requires_grad=True)
    pm.earth_movers_distance(x, x.detach().clone()).distance.backward()
    assert torch.isfinite(x.grad).all()


def test_empty_set_is_nan_with_warning():
    x = torch.rand(2, 10, 3)
    with pytest.warns(RuntimeWarning, match="empty"):
        r = pm.earth_movers_distance(x, x, x_lengths=torch.tensor([10, 0]))
    assert torch.isfinite(r.distance[0]) and torch.isnan(r.distance[1])


def test_round_budget_is_reported_never_silent(gen):
    x, y = clouds("uniform", gen, 300)
    with pytest.raises(RuntimeError, match="max_rounds"):
        pm.earth_movers_distance(x, y, max_rounds=3)


@pytest.mark.parametrize(
    "kwargs,error,match",
    [
        (dict(p=3), ValueError, "p must be one of"),
        (dict(rel_tol=0), ValueError, "rel_tol must be a positive"),
        (dict(rel_tol=-1.0), ValueError, "rel_tol must be a positive"),
        (dict(max_rounds=0), ValueError, "max_rounds must be a positive"),
    ],
)
def test_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        pm.earth_movers_distance(torch.rand(5, 3), torch.rand(5, 3), **kwargs)


def test_bad_inputs():
    with pytest.raises(ValueError, match="batch sizes"):
        pm.earth_movers_distance(torch.rand(2, 5, 3), torch.rand(3, 5, 3))
    with pytest.raises(ValueError, match="different dimension"):
        pm.earth_movers_distance(torch.rand(5, 3), torch.rand(5, 2))
    with pytest.raises(ValueError, match="NaN or Inf"):
        pm.earth_movers_distance(torch.full((5, 3), float("nan")), torch.rand(5, 3))


def test_opcheck(gen):
    x, y = clouds("uniform", gen, 40, torch.float32)
    args = (x[None], y[None, :30].contiguous(), torch.tensor([40]), torch.tensor([30]), 1, 1e-3, 100_000)
    torch.library.opcheck(torch.ops.pointmetrics.auction_assignment, args)


# Collapsed and duplicated predictions (common early in training) once made the auction fight over
# one object per round: 172 identical points against 200 spread ones ran for minutes.
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("n,m,D", [(172, 200, 1), (200, 172, 3), (300, 300, 3), (150, 400, 5)])
def test_collapsed_set_terminates_quickly_and_exactly(gen, p, n, m, D):
    x = torch.zeros(n, D, dtype=torch.float64) + torch.rand(1, D, generator=gen, dtype=torch.float64)
    y = torch.rand(m, D, generator=gen, dtype=torch.float64)
    r, _ = check(x, y, p, 1e-3)
    # The pre-fix schedule needed about (largest cost / eps) rounds: millions here. With eps-scaling
    # and dummy bidders a collapsed set takes 15-25 x max(n, m) rounds (seeds 0-39 of (200, 172, 3):
    # 3400 on average, 4560 at most); 100 x leaves room for unlucky draws and still fails the old way.
    assert int(r.rounds) < 100 * max(n, m)


@pytest.mark.parametrize("scale", [0.0, 1e-9])
def test_near_collapsed_sets_terminate(gen, scale):
    """Points within 1e-9 of one another (or identical) against a spread set, equal sizes."""
    x = scale * torch.randn(512, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(512, 3, generator=gen, dtype=torch.float64)
    check(x, y, 1, 1e-3)


def test_identical_sets_are_matched_in_one_pass(gen):
    x = torch.rand(1, 3, generator=gen).expand(1000, 3)
    r = pm.earth_movers_distance(x, x.clone())
    assert float(r.distance) == 0.0 and int(r.rounds) == 1
    assert torch.equal(r.assignment, torch.arange(1000))


@pytest.mark.parametrize("n,m", [(90, 250), (250, 90), (1, 50)])
def test_unequal_sizes_are_exact_with_eps_scaling(gen, n, m):
    x = torch.rand(n, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(m, 3, generator=gen, dtype=torch.float64) * 2
    check(x, y, 1, 1e-4)


def test_assignment_does_not_depend_on_thread_count(gen):
    x = torch.rand(3000, 3, generator=gen, dtype=torch.float64)
    y = torch.rand(3000, 3, generator=gen, dtype=torch.float64)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = pm.earth_movers_distance(x, y)
        torch.set_num_threads(2)
        two = pm.earth_movers_distance(x, y)
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(one.assignment, two.assignment) and int(one.rounds) == int(two.rounds)


def test_empty_target_with_gradients_gives_nan_and_no_error():
    x = torch.rand(5, 3, requires_grad=True)
    with pytest.warns(RuntimeWarning, match="empty"):
        r = pm.earth_movers_distance(x, torch.zeros(0, 3))
    assert torch.isnan(r.distance) and torch.equal(r.assignment, torch.full((5,), -1))


def test_extreme_float32_coordinates_are_measured_in_float64(gen):
    x = torch.rand(50, 3, generator=gen) * 1e19
    y = x + torch.rand(50, 3, generator=gen) * 1e18
    r = pm.earth_movers_distance(x, y)
    want = exact(x.double(), y.double(), 1)
    assert r.distance.dtype == torch.float64 and abs(float(r.distance) - want) <= 1e-3 * want
    with pytest.raises(ValueError, match="y has coordinates"):
        pm.earth_movers_distance(x.double(), y.double() * 1e140)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_inputs_are_measured_in_float32(gen, device, dtype):
    # The cost of a half-precision matching is the float32 cost of the same (rounded) points: the
    # differences are taken after the cast, so bfloat16's 3 digits do not round them (x - y of
    # coordinates of opposite signs is a sum, which rounds in the inputs' dtype).
    x = (2 * torch.rand(2, 64, 3, generator=gen) - 1).to(dtype).to(device)
    y = (2 * torch.rand(2, 64, 3, generator=gen) - 1).to(dtype).to(device)
    half = pm.earth_movers_distance(x, y, p=1)
    single = pm.earth_movers_distance(x.float(), y.float(), p=1)
    assert half.distance.dtype == torch.float32
    torch.testing.assert_close(half.distance, single.distance, rtol=1e-6, atol=0)


# The CUDA auction (emd_cuda.cu) lays the batch out in device arrays, builds the price trees with
# the device builder and runs the rounds as kernels that stop after a bounded amount of work and
# resume, inside a round if need be (a budget of 1 relaunches after every bid). Its portable
# driver runs the same steps on the CPU: it must return the CPU op's assignment and every
# statistic bit for bit, whatever the launch budget.
auction = torch.ops.pointmetrics.auction_assignment
auction_portable = torch.ops.pointmetrics_testing.auction_assignment_portable


def assert_same_auction(args, launch_work):
    want = auction(*args)
    got = auction_portable(*args, launch_work)
    names = ["assignment", "cost", "lower_bound", "eps", "rounds", "phases", "complete"]
    for name, w, g in zip(names, want, got):
        assert w.dtype == g.dtype and torch.equal(w, g), name
    return want


@pytest.mark.parametrize("kind", ["uniform", "clusters", "duplicates", "plane", "features"])
@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("launch_work", [1, 97, 1 << 40])
def test_device_schedule_gives_the_cpu_assignment(gen, kind, p, launch_work):
    x, y = clouds(kind, gen, 120)
    args = (x[None].contiguous(), y[None].contiguous(), torch.tensor([120]), torch.tensor([120]), p, 1e-3, 10**7)
    assert_same_auction(args, launch_work)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("D", [1, 3, 4])
def test_device_schedule_on_ragged_batches(gen, dtype, D):
    """Unequal sizes either way (y bids for x where x is larger), empty sets on either side."""
    x, xl = ragged(gen, 6, 70, D, dtype)
    y, yl = ragged(gen, 6, 90, D, dtype)
    xl[1], yl[2], xl[3], yl[3] = 0, 0, 70, 20
    for p in (1, 2):
        want = assert_same_auction((x, y, xl, yl, p, 1e-2, 10**7), 50)
        assert bool(want[6].all())


def test_device_schedule_on_collapsed_sets(gen):
    x = torch.rand(1, 1, 3, generator=gen, dtype=torch.float64).expand(1, 150, 3).contiguous()
    y = torch.rand(1, 170, 3, generator=gen, dtype=torch.float64)
    for bidders_first in (True, False):
        a, b = (x, y) if bidders_first else (y, x)
        args = (a, b, torch.tensor([a.size(1)]), torch.tensor([b.size(1)]), 1, 1e-3, 10**7)
        assert_same_auction(args, 200)


def test_device_schedule_out_of_rounds_returns_the_same_partial_state(gen):
    x, y = clouds("uniform", gen, 200)
    for max_rounds in (1, 2, 40):
        args = (x[None], y[None], torch.tensor([200]), torch.tensor([200]), 1, 1e-3, max_rounds)
        want = assert_same_auction(args, 7)
        assert not bool(want[6].all())


def test_device_schedule_reports_non_finite_costs_as_the_cpu_does():
    x = torch.rand(1, 8, 3, dtype=torch.float64)
    x[0, 3, 1] = float("nan")
    args = (x, torch.rand(1, 8, 3, dtype=torch.float64), torch.tensor([8]), torch.tensor([8]), 1, 1e-3, 1000)
    for op in (auction, lambda *a: auction_portable(*a, 10)):
        with pytest.raises(RuntimeError, match="not finite"):
            op(*args)
    huge = (torch.rand(1, 8, 3, dtype=torch.float64) * 1e160, torch.rand(1, 8, 3, dtype=torch.float64))
    args = (*huge, torch.tensor([8]), torch.tensor([8]), 2, 1e-3, 1000)
    for op in (auction, lambda *a: auction_portable(*a, 10)):
        with pytest.raises(RuntimeError, match="not finite"):
            op(*args)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_auction_on_every_device_returns_the_cpu_result(gen, device, dtype):
    """The op itself on each device (the CUDA kernels where there is a GPU): ragged batches, either
    set the larger, an empty set, a collapsed set, and a run that runs out of rounds."""
    x, xl = ragged(gen, 5, 80, 3, dtype)
    y, yl = ragged(gen, 5, 60, 3, dtype)
    xl[1], yl[2] = 0, 0
    x[4] = x[4, :1]  # collapsed
    for p, max_rounds in ((1, 10**7), (2, 10**7), (1, 30)):
        args = (x, y, xl, yl, p, 1e-3, max_rounds)
        want = auction(*args)
        got = auction(*(a.to(device) if torch.is_tensor(a) else a for a in args))
        on = torch.empty(0, device=device).device  # "cuda" names the current GPU: cuda:0
        for w, g in zip(want, got):
            assert g.device == on and torch.equal(w, g.cpu())


@pytest.mark.parametrize("B,N,M", [(2, 0, 0), (0, 4, 5), (1, 0, 3), (1, 3, 0)])
def test_device_schedule_with_no_points_at_all(B, N, M):
    """Empty batches and clouds with no slots (found by a property sweep: the device layout's
    bounding box reduced over an empty dimension)."""
    args = (torch.rand(B, N, 3, dtype=torch.float64), torch.rand(B, M, 3, dtype=torch.float64),
            torch.full((B,), N), torch.full((B,), M), 1, 1e-3, 1000)
    want = assert_same_auction(args, 10)
    assert torch.equal(want[0], torch.full((B, N), -1))
