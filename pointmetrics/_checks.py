"""Input validation shared by every public function.

Errors are raised in Python, before any kernel runs, and name the offending argument. Checks that
need tensor values (lengths in range, finite coordinates) are collected and read back from the
device in a single synchronisation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple, Union

import torch

from ._reduce import valid_mask

PointsLike = Union[torch.Tensor, Sequence[torch.Tensor]]


class ValueChecks:
    """Collects boolean tensors that must be False, and the coordinate magnitudes that decide the
    working precision; `run()` reads them all back in one synchronisation."""

    def __init__(self) -> None:
        self._flags: list[torch.Tensor] = []
        self._messages: list[str] = []
        self._magnitude_names: list[str] = []
        self._magnitudes: list[torch.Tensor] = []
        self.magnitude: dict[str, float] = {}

    def add(self, failed: torch.Tensor, message: str) -> None:
        self._flags.append(failed.reshape(()))
        self._messages.append(message)

    def add_magnitude(self, name: str, value: torch.Tensor) -> None:
        """Queues max |coordinate| of argument ``name``; read back by `run()` into ``magnitude``."""
        self._magnitude_names.append(name)
        self._magnitudes.append(value.reshape(()).to(torch.float64))

    def run(self) -> None:
        if not self._flags and not self._magnitudes:
            return
        values = [f.to(torch.float64) for f in self._flags] + self._magnitudes
        read = torch.stack(values).cpu().tolist()
        for bad, message in zip(read, self._messages):
            if bad:
                raise ValueError(message)
        self.magnitude.update(zip(self._magnitude_names, read[len(self._flags):]))


def _pad_list(points: Sequence[torch.Tensor], name: str) -> tuple[torch.Tensor, torch.Tensor]:
    if len(points) == 0:
        raise ValueError(f"{name} is an empty list; expected one (N_i, D) tensor per cloud")
    first = points[0]
    for i, p in enumerate(points):
        if not isinstance(p, torch.Tensor):
            raise TypeError(f"{name}[{i}] must be a torch.Tensor, got {type(p).__name__}")
        if p.ndim != 2:
            raise ValueError(f"{name}[{i}] must have shape (N_i, D), got {tuple(p.shape)}")
        if p.shape[1] != first.shape[1] or p.dtype != first.dtype or p.device != first.device:
            raise ValueError(f"{name}[{i}] differs from {name}[0] in D, dtype or device")
    lengths = torch.tensor([p.shape[0] for p in points], dtype=torch.int64, device=first.device)
    padded = first.new_zeros((len(points), int(lengths.max()), first.shape[1]))
    for i, p in enumerate(points):
        padded[i, : p.shape[0]] = p
    return padded, lengths


class Clouds(NamedTuple):
    """A batch of validated clouds: (B, N, D) points, (B,) int64 lengths (the padding past them may
    hold anything), and whether the input was a single (N, D) cloud."""

    points: torch.Tensor
    lengths: torch.Tensor
    unbatched: bool


def as_padded(
    points: PointsLike,
    lengths: torch.Tensor | Sequence[int] | None,
    name: str,
    checks: ValueChecks,
    *,
    finite: bool = True,
) -> Clouds:
    """Returns (B, N, D) points, (B,) int64 lengths and whether the input was a single (N, D) cloud.

    Accepts a (B, N, D) tensor with optional lengths, a single (N, D) cloud, or a list of (N_i, D)
    tensors. Value checks (lengths in range, finite valid points) are queued on `checks`.
    """
    unbatched = False
    if isinstance(points, (list, tuple)):
        if lengths is not None:
            raise ValueError(f"{name}: pass lengths only with a padded tensor, not with a list of clouds")
        points, lengths = _pad_list(points, name)
    elif not isinstance(points, torch.Tensor):
        raise TypeError(
            f"{name} must be a tensor of shape (B, N, D) or a list of (N_i, D) tensors, got {type(points).__name__}"
        )
    if not points.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor, got dtype {points.dtype}")
    if points.ndim == 2:
        points = points.unsqueeze(0)
        unbatched = True
    if points.ndim != 3:
        raise ValueError(f"{name} must have shape (B, N, D) or (N, D), got {tuple(points.shape)}")
    if points.shape[2] < 1:
        raise ValueError(f"{name} has points of dimension 0")
    B, N, _ = points.shape
    full = lengths is None
    if full:
        lengths = torch.full((B,), N, dtype=torch.int64, device=points.device)
    else:
        if not isinstance(lengths, torch.Tensor):
            lengths = torch.as_tensor(lengths, device=points.device)
        if lengths.is_floating_point() or lengths.is_complex() or lengths.dtype == torch.bool:
            raise TypeError(f"{name}_lengths must be an integer tensor, got dtype {lengths.dtype}")
        if lengths.shape != (B,):
            raise ValueError(f"{name}_lengths must have shape ({B},), got {tuple(lengths.shape)}")
        if lengths.device != points.device:
            raise ValueError(f"{name}_lengths is on {lengths.device} but {name} is on {points.device}")
        lengths = lengths.to(torch.int64)
        checks.add(((lengths < 0) | (lengths > N)).any(), f"{name}_lengths values must lie in [0, {N}]")
    if finite and points.numel() > 0:
        values = points.detach()
        if not full:  # padding past the lengths may hold anything
            values = torch.where(valid_mask(lengths, N).unsqueeze(-1), values, 0)
        # max |x| in one pass without temporaries (30x faster than isfinite + abs + amax on 1e6
        # points); aminmax propagates NaN, so the magnitude is finite exactly when every value is.
        lo, hi = torch.aminmax(values)
        magnitude = torch.maximum(-lo, hi)
        checks.add(~torch.isfinite(magnitude), f"{name} contains NaN or Inf coordinates")
        checks.add_magnitude(name, magnitude)
    return Clouds(points, lengths, unbatched)


def clouds(points: PointsLike, lengths, name: str) -> Clouds:
    """:func:`as_padded` with its value checks run at once (one sync), for a single argument."""
    checks = ValueChecks()
    result = as_padded(points, lengths, name, checks)
    checks.run()
    return result


def check_pair(
    x: torch.Tensor, y: torch.Tensor, xname: str = "x", yname: str = "y"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Checks that two padded clouds can be compared and returns them in one floating dtype.

    Mixed dtypes are promoted as torch promotes them (float32 with float64 gives float64, float16
    with bfloat16 gives float32), so ``f(x.double(), y.float())`` equals ``f(x.double(), y.double())``
    and gradients reach both inputs in their own dtypes.
    """
    if x.device != y.device:
        raise ValueError(f"{xname} is on {x.device} but {yname} is on {y.device}")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{xname} and {yname} have different batch sizes ({x.shape[0]} and {y.shape[0]})")
    if x.shape[2] != y.shape[2]:
        raise ValueError(f"{xname} and {yname} have points of different dimension ({x.shape[2]} and {y.shape[2]})")
    dtype = torch.promote_types(x.dtype, y.dtype)
    return x.to(dtype), y.to(dtype)


class CloudPair(NamedTuple):
    """Two padded clouds whose shapes, devices and dtype are checked and whose value checks are queued."""

    x: torch.Tensor
    x_lengths: torch.Tensor
    y: torch.Tensor
    y_lengths: torch.Tensor
    unbatched: bool
    names: tuple[str, str]


def cloud_pair(x, y, x_lengths, y_lengths, checks: ValueChecks, names: tuple[str, str] = ("x", "y")) -> CloudPair:
    """The pair's forms, shapes and devices checked (as_padded, check_pair) and its value checks
    queued on ``checks``; callers may queue more, then call :func:`measured_pair`."""
    xname, yname = names
    xb, xl, unbatched = as_padded(x, x_lengths, xname, checks)
    yb, yl, _ = as_padded(y, y_lengths, yname, checks)
    xb, yb = check_pair(xb, yb, xname, yname)
    return CloudPair(xb, xl, yb, yl, unbatched, names)


class Pair(NamedTuple):
    """Two validated clouds to compare, in their working precision (:func:`working_precision`):
    what the cores of the pair metrics (knn_core, correspondences_core, ...) take."""

    x: torch.Tensor
    x_lengths: torch.Tensor
    y: torch.Tensor
    y_lengths: torch.Tensor
    unbatched: bool


def measured_pair(pair: CloudPair, checks: ValueChecks) -> Pair:
    """Runs the queued value checks (one sync) and returns the validated :class:`Pair`."""
    checks.run()
    xb, yb = working_precision((pair.x, pair.y), pair.names, checks)
    return Pair(xb, pair.x_lengths, yb, pair.y_lengths, pair.unbatched)


def validated_pair(x, y, x_lengths=None, y_lengths=None, names: tuple[str, str] = ("x", "y")) -> Pair:
    """:func:`cloud_pair` and :func:`measured_pair` in one, for callers with no checks of their own."""
    checks = ValueChecks()
    return measured_pair(cloud_pair(x, y, x_lengths, y_lengths, checks, names), checks)


# Squared distances of float32 coordinates overflow beyond about 1.8e19 and lose precision
# (subnormal numbers) below about 1e-19; float16/bfloat16 inputs are measured in float32 too. Clouds
# outside [SMALLEST_FLOAT32, LARGEST_FLOAT32] in magnitude are measured in float64 instead.
LARGEST_FLOAT32 = 2.0**60  # squares stay below 2^120 + sums: far from float32's 2^128
SMALLEST_FLOAT32 = 2.0**-40  # differences of such coordinates square to normal float32 numbers
# float64 squares overflow beyond about 1.3e154: coordinates above 2^500 (3e150) are refused.
LARGEST_FLOAT64 = 2.0**500


def working_precision(
    clouds: Sequence[torch.Tensor], names: Sequence[str], checks: ValueChecks
) -> list[torch.Tensor]:
    """The clouds in the dtype their distances are measured in, after ``checks.run()``.

    float16/bfloat16/float32 clouds are measured in float32 unless their largest coordinate lies
    outside [2^-40, 2^60] (a cloud of zeros is fine), where float32 squared distances would
    overflow or go subnormal: they are then measured in float64 and results come back in float64.
    float64 clouds with coordinates beyond 2^500 (about 3e150) raise a ValueError naming the
    argument, since their squared distances would overflow even float64.
    """
    magnitudes = [checks.magnitude.get(name, 0.0) for name in names]
    for name, cloud, m in zip(names, clouds, magnitudes):
        if cloud.dtype == torch.float64 and m > LARGEST_FLOAT64:
            raise ValueError(
                f"{name} has coordinates up to {m:.3g}; squared distances overflow float64 beyond 2^500 "
                "(about 3e150): rescale the points"
            )
    largest = max(magnitudes, default=0.0)
    extreme = largest > LARGEST_FLOAT32 or 0.0 < largest < SMALLEST_FLOAT32
    if extreme and any(c.dtype != torch.float64 for c in clouds):
        return [c.to(torch.float64) for c in clouds]
    return list(clouds)


def check_float_tensor(value, name: str) -> torch.Tensor:
    """``value`` itself if it is a floating-point tensor; a TypeError naming ``name`` otherwise."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {value.dtype}")
    return value


def check_positive_int(value, name: str) -> None:
    """A count: an int >= 1 (booleans are not counts)."""
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")


def check_positive_number(value, name: str) -> None:
    """A finite number > 0."""
    if not (isinstance(value, (int, float)) and value > 0 and math.isfinite(value)):
        raise ValueError(f"{name} must be a positive number, got {value!r}")


def broadcast_mask(mask, shape, dtype: torch.dtype, name: str = "mask") -> torch.Tensor:
    """``mask`` broadcast to ``shape`` as 0/1 weights of ``dtype``."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(mask).__name__}")
    try:
        return torch.broadcast_to(mask, shape).to(dtype)
    except RuntimeError:
        raise ValueError(f"{name} of shape {tuple(mask.shape)} does not broadcast to {tuple(shape)}") from None


def check_choice(value, allowed: Sequence, name: str) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")


def check_normals(normals: torch.Tensor | None, shape: tuple, device: torch.device, name: str) -> torch.Tensor | None:
    """Normals as a (B, N, D) tensor of the given shape and device, or None."""
    if normals is None:
        return None
    if isinstance(normals, (list, tuple)):
        normals, _ = _pad_list(normals, name)
    if not isinstance(normals, torch.Tensor) or not normals.is_floating_point():
        raise TypeError(f"{name} must be a floating point tensor")
    if normals.ndim == 2:
        normals = normals.unsqueeze(0)
    if normals.shape != tuple(shape):
        raise ValueError(f"{name} must have the shape of its points {tuple(shape)}, got {tuple(normals.shape)}")
    if normals.device != device:
        raise ValueError(f"{name} is on {normals.device} but its points are on {device}")
    return normals
