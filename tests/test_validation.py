"""Bad input gets a clear Python error naming the argument, before any kernel runs."""

import pytest
import torch

import pointmetrics as pm

X = torch.rand(2, 10, 3)
Y = torch.rand(2, 8, 3)


@pytest.mark.parametrize(
    "call,error,match",
    [
        (lambda: pm.knn_points(torch.rand(10), Y), ValueError, "x must have shape"),
        (lambda: pm.knn_points(X, torch.rand(2, 8, 2)), ValueError, "different dimension"),
        (lambda: pm.knn_points(X, torch.rand(3, 8, 3)), ValueError, "batch sizes"),
        (lambda: pm.knn_points(X.long(), Y), TypeError, "x must be a floating point"),
        (lambda: pm.knn_points(X, Y.to("meta")), ValueError, "y is on meta"),
        (
            lambda: pm.knn_points(X, Y, x_lengths=torch.tensor([10, 11])),
            ValueError,
            r"x_lengths values must lie in \[0, 10\]",
        ),
        (lambda: pm.knn_points(X, Y, y_lengths=torch.tensor([-1, 3])), ValueError, "y_lengths values"),
        (lambda: pm.knn_points(X, Y, x_lengths=torch.tensor([1.0, 2.0])), TypeError, "x_lengths must be an integer"),
        (lambda: pm.knn_points(X, Y, x_lengths=torch.tensor([3])), ValueError, r"x_lengths must have shape \(2,\)"),
        (
            lambda: pm.knn_points(X, Y, x_lengths=torch.tensor([3, 3], device="meta")),
            ValueError,
            "x_lengths is on meta",
        ),
        (lambda: pm.knn_points(X, Y, K=0), ValueError, "K must be"),
        (lambda: pm.knn_points(X, Y, norm=3), ValueError, "norm must be one of"),
        (lambda: pm.knn_points(torch.full((1, 3, 3), float("nan")), Y[:1]), ValueError, "x contains NaN"),
        (
            lambda: pm.knn_points(X, Y.index_fill(1, torch.tensor([2]), float("inf"))),
            ValueError,
            "y contains NaN or Inf",
        ),
        (lambda: pm.knn_points([], Y), ValueError, "empty list"),
        (lambda: pm.knn_points("points", Y), TypeError, "x must be a tensor"),
        (lambda: pm.chamfer_distance(X, Y, point_reduction="median"), ValueError, "point_reduction must be one of"),
        (lambda: pm.chamfer_distance(X, Y, batch_reduction="max"), ValueError, "batch_reduction must be one of"),
        (lambda: pm.chamfer_distance(X, Y, point_reduction=None), ValueError, "batch_reduction must be None"),
        (lambda: pm.chamfer_distance(X, Y, weights=torch.tensor([1.0, -1.0])), ValueError, "non-negative"),
        (lambda: pm.chamfer_distance(X, Y, weights=torch.ones(3)), ValueError, r"weights must have shape \(2,\)"),
        (
            lambda: pm.chamfer_distance(X, Y, x_normals=torch.rand(2, 9, 3), y_normals=Y),
            ValueError,
            "x_normals must have",
        ),
        (
            lambda: pm.chamfer_distance(X, Y, x_normals=X, y_normals=Y, point_reduction="max"),
            ValueError,
            "normals must be None",
        ),
        (lambda: pm.chamfer_l1(X, Y, reduction="avg"), ValueError, "reduction must be one of"),
        (lambda: pm.hausdorff_distance(X, Y, direction="both"), ValueError, "direction must be one of"),
        (lambda: pm.fscore(X, Y, [0.1, -0.2]), ValueError, "thresholds must be positive"),
        (lambda: pm.fscore(X, Y, []), ValueError, "thresholds must be positive"),
    ],
)
def test_bad_input_is_rejected(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_nan_in_padding_is_ignored():
    x = torch.rand(1, 6, 3)
    x[0, 4:] = float("nan")
    r = pm.knn_points(x, Y[:1], x_lengths=torch.tensor([4]))
    assert (r.idx[0, 4:] == -1).all() and (r.idx[0, :4] >= 0).all()


def test_raw_op_rejects_bad_arguments():
    lengths = torch.tensor([10, 8])
    with pytest.raises(RuntimeError, match="K must be at least 1"):
        torch.ops.pointmetrics.knn(X, Y, lengths, lengths, 0, 2)
    with pytest.raises(RuntimeError, match="lengths must be int64"):
        torch.ops.pointmetrics.knn(X, Y, lengths.int(), lengths, 1, 2)
    with pytest.raises(RuntimeError, match=r"values must lie in \[0, 8\]"):
        torch.ops.pointmetrics.knn(X, Y, lengths, torch.tensor([9, 1]), 1, 2)


def test_knn_points_arguments_after_y_are_keyword_only():
    # PyTorch3D's order is (p1, p2, lengths1, lengths2, norm, K): a positional call written for it
    # must fail loudly, never run with K and the lengths swapped.
    x, y, lengths = torch.rand(2, 5, 3), torch.rand(2, 6, 3), torch.tensor([5, 4])
    with pytest.raises(TypeError, match="positional"):
        pm.knn_points(x, y, lengths, lengths)
    with pytest.raises(TypeError, match="positional"):
        pm.knn_points(x, y, 2)
    assert pm.knn_points(x, y, K=2).idx.shape == (2, 5, 2)
