"""Builds pointmetrics._C: C++ sources always, CUDA sources when torch has CUDA and nvcc exists.

Build it against the torch that will import it:  pip install --no-build-isolation -e .
The torch it was built with is written to pointmetrics/_build_info.py (beside the compiled library);
pointmetrics/_ops.py compares it with the running torch at import.
"""

import glob
import os
import re
import shutil
import subprocess

from setuptools import setup

ROOT = os.path.dirname(os.path.abspath(__file__))
ADVICE = (
    "pointmetrics must be compiled against the torch that will import it. Install torch first "
    "(`pip install torch`, any version >= 2.4, CUDA build for GPU kernels), then install with:\n"
    "    pip install --no-build-isolation .        (or  pip install --no-build-isolation -e .)"
)
# Real architectures built when TORCH_CUDA_ARCH_LIST is unset and no GPU is visible (a Docker
# build, a login node), restricted to what nvcc supports; the newest also gets PTX, so newer GPUs
# JIT-compile it.
DEFAULT_ARCHS = ["7.5", "8.0", "8.6", "8.9", "9.0", "10.0", "12.0"]
# The host .cpp files need C++20 (std::atomic_ref in csrc/raster/raster_cpu.cpp), so GCC >= 10.
# nvcc gets no -std: torch's BuildExtension adds the one its headers need (c++17 before torch 2.13,
# c++20 from 2.13 on, which needs CUDA >= 12); the CUDA sources compile as either.
CXX_STD = "-std=c++20"
MIN_GCC = 10


def import_torch():
    """torch, or SystemExit with the install advice (an isolated build environment has none)."""
    try:
        import torch
    except ImportError as error:
        raise SystemExit(f"pointmetrics: cannot import torch in this build environment ({error}).\n{ADVICE}") from None
    return torch


def isolated_build_env(path):
    """The marker in ``path`` showing that it lies in a temporary build-isolation environment
    (pip: pip-build-env-*, pypa/build: build-env-*, uv: builds-v0), or None."""
    for part in os.path.normpath(os.path.abspath(path)).split(os.sep):
        if part.startswith(("pip-build-env-", "build-env-")) or part == "builds-v0":
            return part
    return None


def refuse_isolated_torch(torch):
    """SystemExit when torch was installed only for this build, in pip's isolated environment: the
    extension would be built against it and fail to load in the user's environment."""
    if os.environ.get("POINTMETRICS_ALLOW_ISOLATED_BUILD", "0") == "1":
        return
    marker = isolated_build_env(torch.__file__)
    if marker:
        raise SystemExit(
            f"pointmetrics: this build imports torch {torch.__version__} from a temporary build environment "
            f"({os.path.dirname(torch.__file__)}), not the torch of the environment it is installed into.\n{ADVICE}\n"
            "(Set POINTMETRICS_ALLOW_ISOLATED_BUILD=1 to build a wheel against that torch on purpose.)"
        )


def compiler_version(cxx):
    """(name, major) of the C++ compiler, name 'gcc' or 'clang' or 'other'; None if it cannot run."""
    try:
        banner = subprocess.run([cxx, "--version"], capture_output=True, text=True, timeout=30).stdout
        version = subprocess.run([cxx, "-dumpversion"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    if "clang" in banner.lower():
        name = "clang"
    else:
        name = "gcc" if re.search(r"g\+\+|gcc|free software", banner, re.I) else "other"
    match = re.match(r"(\d+)", version.strip())
    return (name, int(match.group(1))) if match else None


def check_compiler():
    cxx = os.environ.get("CXX", "c++")
    found = compiler_version(cxx)
    if found and found[0] == "gcc" and found[1] < MIN_GCC:
        raise SystemExit(
            f"pointmetrics: the C++ sources need C++20 (std::atomic_ref), so GCC >= {MIN_GCC}; `{cxx}` is GCC "
            f"{found[1]}. Install a newer GCC and point CXX (and CC) at it, e.g. CXX=g++-11 CC=gcc-11."
        )


def nvcc_archs(nvcc):
    """The real architectures ('8.6') this nvcc can compile for: from `nvcc --list-gpu-arch`
    (CUDA >= 11.0), else from the CUDA version."""
    try:
        listed = subprocess.run([nvcc, "--list-gpu-arch"], capture_output=True, text=True, timeout=60)
        found = {f"{m[:-1]}.{m[-1]}" for m in re.findall(r"compute_(\d+)\b", listed.stdout)}
        if listed.returncode == 0 and found:
            return found
        banner = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return set()
    match = re.search(r"release (\d+)\.(\d+)", banner)
    if not match:
        return set()
    cuda = (int(match.group(1)), int(match.group(2)))
    known = [((11, 0), "7.5"), ((11, 0), "8.0"), ((11, 1), "8.6"), ((11, 8), "8.9"), ((11, 8), "9.0"),
             ((12, 8), "10.0"), ((12, 8), "12.0")]
    return {arch for since, arch in known if cuda >= since}


def default_arch_list(nvcc):
    """DEFAULT_ARCHS that nvcc supports, the newest with +PTX, e.g. '7.5;8.0;...;12.0+PTX'."""
    supported = nvcc_archs(nvcc)
    archs = [a for a in DEFAULT_ARCHS if a in supported] or ["7.5"]
    return ";".join(archs) + "+PTX"


def gencode_flags(arch_list):
    """nvcc -gencode flags for an arch list such as '8.0;9.0+PTX' (as torch would write them)."""
    flags = []
    for arch in arch_list.split(";"):
        number = arch.replace("+PTX", "").replace(".", "")
        flags.append(f"-gencode=arch=compute_{number},code=sm_{number}")
        if arch.endswith("+PTX"):
            flags.append(f"-gencode=arch=compute_{number},code=compute_{number}")
    return flags


def cuda_arch_flags(torch, nvcc):
    """(flags to add, the arch list in words). With TORCH_CUDA_ARCH_LIST set or a GPU visible,
    torch chooses (no flags); otherwise our default list, given as -gencode flags so that torch
    versions that do not know the newest architectures do not reject it."""
    if os.environ.get("TORCH_CUDA_ARCH_LIST"):
        return [], f"TORCH_CUDA_ARCH_LIST={os.environ['TORCH_CUDA_ARCH_LIST']}"
    try:
        visible = torch.cuda.device_count()
    except Exception:  # noqa: BLE001 - a broken driver counts as no GPU
        visible = 0
    if visible:
        caps = sorted({"{}.{}".format(*torch.cuda.get_device_capability(i)) for i in range(visible)})
        return [], f"the visible GPUs' ({';'.join(caps)}; TORCH_CUDA_ARCH_LIST unset)"
    arch_list = default_arch_list(nvcc)
    return gencode_flags(arch_list), f"{arch_list} (TORCH_CUDA_ARCH_LIST unset, no GPU visible)"


def nvcc_version(nvcc):
    try:
        banner = subprocess.run([nvcc, "--version"], capture_output=True, text=True, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"release (\d+\.\d+)", banner)
    return match.group(1) if match else None


def build_info_text(torch, with_cuda, arch_words, nvcc_release):
    abi = getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)
    return (
        '"""Written by setup.py when pointmetrics._C was built: the torch it was compiled against."""\n\n'
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"TORCH_CUDA = {torch.version.cuda!r}\n"
        f"WITH_CUDA = {with_cuda!r}\n"
        f"NVCC = {nvcc_release!r}\n"
        f"CUDA_ARCHS = {arch_words!r}\n"
        f"CXX11_ABI = {abi!r}\n"
    )


def main():
    torch = import_torch()
    refuse_isolated_torch(torch)
    from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CppExtension, CUDAExtension

    check_compiler()
    cpp = sorted(glob.glob("csrc/**/*.cpp", recursive=True))
    cuda = sorted(glob.glob("csrc/**/*.cu", recursive=True))
    with_cuda = torch.version.cuda is not None and CUDA_HOME is not None
    if os.environ.get("POINTMETRICS_FORCE_CPU", "0") == "1":
        with_cuda = False
    # -ffp-contract=off: CPU and CUDA must round distances identically (see csrc/common.h).
    # -fno-math-errno: sqrt without the errno branch, so that it vectorises (csrc/mesh/winding_lanes.h);
    # results are unchanged (IEEE sqrt either way).
    cxx = ["-O3", CXX_STD, "-fopenmp", "-ffp-contract=off", "-fno-math-errno"]
    arch_words, nvcc_release = None, None
    if with_cuda:
        nvcc_path = os.path.join(CUDA_HOME, "bin", "nvcc")
        if not os.path.exists(nvcc_path):
            nvcc_path = shutil.which("nvcc") or nvcc_path
        nvcc_release = nvcc_version(nvcc_path)
        arch_flags, arch_words = cuda_arch_flags(torch, nvcc_path)
        print(f"pointmetrics: building CUDA kernels (nvcc {nvcc_release}) for {arch_words}", flush=True)
        nvcc = ["-O3", "--expt-relaxed-constexpr"] + arch_flags
        ext = CUDAExtension(
            "pointmetrics._C",
            cpp + cuda,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx, "nvcc": nvcc},
            extra_link_args=["-fopenmp"],
        )
    else:
        print("pointmetrics: building without CUDA kernels", flush=True)
        ext = CppExtension(
            "pointmetrics._C",
            cpp,
            include_dirs=[os.path.join(ROOT, "csrc")],
            extra_compile_args={"cxx": cxx},
            extra_link_args=["-fopenmp"],
        )
    info = build_info_text(torch, with_cuda, arch_words, nvcc_release)

    class Build(BuildExtension.with_options(use_ninja=True)):
        """Writes pointmetrics/_build_info.py beside the compiled library once it is built."""

        def run(self):
            inplace = self.inplace or getattr(self, "editable_mode", False)
            super().run()
            targets = [os.path.join(self.build_lib, "pointmetrics")]
            if inplace:
                targets.append(os.path.join(ROOT, "pointmetrics"))
            for folder in targets:
                os.makedirs(folder, exist_ok=True)
                with open(os.path.join(folder, "_build_info.py"), "w") as f:
                    f.write(info)

    setup(ext_modules=[ext], cmdclass={"build_ext": Build})


if __name__ == "__main__":
    main()
