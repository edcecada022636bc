"""Builds pointmetrics._C: C++ sources always, CUDA sources when torch has CUDA and nvcc exists."""

import glob
import os

from setuptools import setup
from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension
import torch

ROOT = os.path.dirname(os.path.abspath(__file__))


def extension():
    cpp = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cuda = sorted(glob.glob("csrc/**/*.cu", recursive=True))
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None
    if os.environ.get("POINTMETRICS_FORCE_CPU", "0") == "1":
        with_cuda = False
    # -ffp-contract=off: CPU and CUDA must round distances identically (see csrc/common.h).
    cxx = ["-O3", "-std=c++20", "-fopenmp", "-ffp-contract=off"]
    if with_cuda:
        nvcc = ["-O3", "-std=c++20", "--expt-relaxed-constexpr", "-DPOINTMETRICS_WITH_CUDA"]
        return CUDAExtension(
            "pointmetrics._C",
            cpp + cuda,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx + ["-DPOINTMETRICS_WITH_CUDA"], "nvcc": nvcc},
            extra_link_args=["-fopenmp"],
        )
    return CppExtension(
        "pointmetrics._C",
        cpp,
        include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx},
        extra_link_args=["-fopenmp"],
    )


setup(ext_modules=[extension()], cmdclass={"build_ext": BuildExtension.with_options(use_ninja=True)})
