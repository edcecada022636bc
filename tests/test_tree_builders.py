"""The two point-tree builders build the identical tree: the CPU's nth_element builder and the
ATen builder that the CUDA backend runs (run here on the CPU through a test-only op). MeshBVH's
slot order (kd_order of centroids) therefore does not depend on the device."""

import pytest
import torch

import pointmetrics  # noqa: F401  (loads the library, test namespace included)

point_tree = torch.ops.pointmetrics_testing.point_tree


def assert_same_tree(points, lengths):
    cpu = point_tree(points, lengths, False)
    portable = point_tree(points, lengths, True)
    for name, a, b in zip(("idx", "pts", "lo", "hi", "split_axis", "split_val"), cpu, portable):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("n", [1, 7, 8, 9, 100, 1000, 5000])
def test_builders_agree_on_random_clouds(gen, dtype, n):
    points = torch.rand(3, n, 3, generator=gen, dtype=dtype)
    lengths = torch.tensor([n, max(n // 2, 0), max(n - 3, 0)])
    assert_same_tree(points, lengths)


@pytest.mark.parametrize("kind", ["grid", "duplicates", "plane", "line"])
def test_builders_agree_with_ties(gen, kind):
    """Many points tied at the split coordinates: the old builders put them in different slots."""
    n = 2000
    if kind == "grid":
        points = torch.randint(0, 5, (2, n, 3), generator=gen).double()
    elif kind == "duplicates":
        points = torch.rand(2, n // 100, 3, generator=gen).repeat(1, 100, 1)
    elif kind == "plane":
        points = torch.rand(2, n, 3, generator=gen)
        points[..., 2] = 0.5
    else:
        points = torch.zeros(2, n, 3)
        points[..., 0] = torch.randint(0, 3, (2, n), generator=gen).float()
    assert_same_tree(points, torch.tensor([points.shape[1], points.shape[1] - 11]))


@pytest.mark.parametrize("kind", ["outliers", "signed_zeros", "huge", "tiny"])
def test_builders_agree_on_skewed_clouds(gen, kind):
    """The CPU builder selects each split through a histogram of the coordinates (select_rank):
    clouds whose coordinates crowd one bucket, tie as -0 and +0, overflow the range or sit among
    subnormals must still split exactly as a sort by (coordinate, index) does."""
    n = 6000
    points = torch.rand(2, n, 3, generator=gen, dtype=torch.float64)
    if kind == "outliers":  # nearly every point in the lowest bucket of its node
        points[:, :10] *= 1e6
        points[:, 10:] *= 1e-3
    elif kind == "signed_zeros":
        points = torch.where(points < 0.5, 0.0, -0.0) * torch.randint(0, 2, (2, n, 3), generator=gen)
        points[:, ::7] = torch.rand(2, len(range(0, n, 7)), 3, generator=gen)
    elif kind == "huge":  # hi - lo overflows
        points = (points - 0.5) * 3e308
    else:
        points = points * 1e-310
    for dtype in (torch.float32, torch.float64):
        assert_same_tree(points.to(dtype), torch.tensor([n, n - 999]))


def test_kd_order_is_the_tree_order(gen):
    points = torch.randint(0, 4, (2, 300, 3), generator=gen).float()
    lengths = torch.tensor([300, 120])
    assert torch.equal(torch.ops.pointmetrics.kd_order(points, lengths), point_tree(points, lengths, True)[0])


def test_kd_order_is_the_same_on_every_device(gen, device):
    points = torch.randint(0, 6, (2, 3000, 3), generator=gen).double()  # many ties
    lengths = torch.tensor([3000, 1777])
    on_cpu = torch.ops.pointmetrics.kd_order(points, lengths)
    on_device = torch.ops.pointmetrics.kd_order(points.to(device), lengths.to(device))
    assert torch.equal(on_cpu, on_device.cpu())
