"""The layout constants pointmetrics/_ops.py mirrors from the C++ sources equal them."""

import pytest
import torch

from pointmetrics import _ops

constant = torch.ops.pointmetrics_testing.constant


@pytest.mark.parametrize(
    "python_name, cxx_name",
    [("LEAF_SIZE", "kLeafSize"), ("FRAME_BYTES", "kFrameBytes"), ("BOX4_FLOATS", "kBox4")],
)
def test_python_constant_equals_cxx(python_name, cxx_name):
    assert getattr(_ops, python_name) == constant(cxx_name)


def test_unknown_constant_is_an_error():
    with pytest.raises(RuntimeError, match="no constant named"):
        constant("kNoSuchThing")
