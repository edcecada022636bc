"""The build logic in setup.py and the import-time check of the torch version, without building."""

import importlib.util
import os
import pathlib
import stat
import subprocess
import sys
import types

import pytest
import torch

from pointmetrics._ops import _build_mismatch, _release

ROOT = pathlib.Path(__file__).resolve().parent.parent


def load_setup():
    """setup.py as a module; its main() (which calls setup()) only runs as a script."""
    spec = importlib.util.spec_from_file_location("pointmetrics_setup", ROOT / "setup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def info(version="2.13.0+cu128", cuda="12.8", with_cuda=True, abi=None):
    return {"TORCH_VERSION": version, "TORCH_CUDA": cuda, "WITH_CUDA": with_cuda,
            "CXX11_ABI": getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None) if abi is None else abi}


def test_release_parses_torch_versions():
    assert _release("2.13.0+cpu") == (2, 13, 0)
    assert _release("2.14.0.dev20260101+cu128") == (2, 14, 0)
    assert _release("2.4.1") == (2, 4, 1)


def test_same_torch_passes():
    assert _build_mismatch(info(), "2.13.0+cu128", "12.8") is None
    assert _build_mismatch({}, "2.13.0", None) is None  # built before build info existed


def test_other_minor_release_is_an_error():
    level, message = _build_mismatch(info(), "2.14.0+cu128", "12.8")
    assert level == "error"
    assert "2.13.0+cu128" in message and "2.14.0+cu128" in message
    assert "pip install --no-build-isolation -e ." in message


def test_patch_release_only_warns():
    level, message = _build_mismatch(info(), "2.13.1+cu128", "12.8")
    assert level == "warn" and "2.13.1" in message


def test_cuda_kernels_need_a_cuda_torch():
    level, message = _build_mismatch(info(), "2.13.0+cpu", None)
    assert level == "error" and "CUDA" in message


def test_cuda_major_mismatch_is_an_error_minor_warns():
    assert _build_mismatch(info(version="2.6.0+cu118", cuda="11.8"), "2.6.0+cu124", "12.4")[0] == "error"
    assert _build_mismatch(info(version="2.6.0+cu126", cuda="12.6"), "2.6.0+cu124", "12.4")[0] == "warn"


def test_cpu_build_under_a_cuda_torch_warns_that_it_has_no_kernels():
    level, message = _build_mismatch(info(version="2.13.0+cpu", cuda=None, with_cuda=False), "2.13.0+cu128", "12.8")
    assert level == "warn" and "no CUDA kernels" in message


def test_cxx11_abi_mismatch_is_an_error():
    running = getattr(torch._C, "_GLIBCXX_USE_CXX11_ABI", None)
    if running is None:
        pytest.skip("this torch does not report its C++ ABI")
    assert _build_mismatch(info(abi=not running), "2.13.0+cu128", "12.8")[0] == "error"


def test_build_info_written_by_setup_matches_this_torch():
    setup = load_setup()
    namespace = {}
    exec(setup.build_info_text(torch, torch.version.cuda is not None, None, None), namespace)
    recorded = {k: v for k, v in namespace.items() if k.isupper()}
    assert recorded["TORCH_VERSION"] == torch.__version__
    assert _build_mismatch(recorded, torch.__version__, torch.version.cuda) is None


def test_gencode_flags_and_default_arch_list(tmp_path):
    setup = load_setup()
    assert setup.gencode_flags("8.0;12.0+PTX") == [
        "-gencode=arch=compute_80,code=sm_80",
        "-gencode=arch=compute_120,code=sm_120",
        "-gencode=arch=compute_120,code=compute_120",
    ]

    def fake_nvcc(listing, release, list_ok=True):
        path = tmp_path / "nvcc"
        path.write_text(
            "#!/bin/sh\n"
            f'if [ "$1" = --list-gpu-arch ]; then printf "{listing}"; exit {0 if list_ok else 1}; fi\n'
            f'echo "Cuda compilation tools, release {release}, V{release}.1"\n'
        )
        path.chmod(path.stat().st_mode | stat.S_IEXEC)
        return str(path)

    cuda13 = "".join(f"compute_{a}\\n" for a in (75, 80, 86, 87, 88, 89, 90, 100, 110, 103, 120, 121))
    assert setup.default_arch_list(fake_nvcc(cuda13, "13.0")) == "7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"
    cuda118 = "".join(f"compute_{a}\\n" for a in (35, 37, 50, 52, 53, 60, 61, 62, 70, 72, 75, 80, 86, 87, 89, 90))
    assert setup.default_arch_list(fake_nvcc(cuda118, "11.8")) == "7.5;8.0;8.6;8.9;9.0+PTX"
    # an nvcc without --list-gpu-arch: the list follows from the CUDA version
    assert setup.default_arch_list(fake_nvcc("", "12.4", list_ok=False)) == "7.5;8.0;8.6;8.9;9.0+PTX"
    assert setup.default_arch_list(fake_nvcc("", "12.8", list_ok=False)).endswith("10.0;12.0+PTX")


def test_arch_flags_without_gpu_or_list(tmp_path, monkeypatch):
    setup = load_setup()
    nvcc = tmp_path / "nvcc"
    nvcc.write_text('#!/bin/sh\nprintf "compute_75\\ncompute_80\\ncompute_90\\n"\n')
    nvcc.chmod(0o755)
    no_gpu = types.SimpleNamespace(cuda=types.SimpleNamespace(device_count=lambda: 0))
    monkeypatch.delenv("TORCH_CUDA_ARCH_LIST", raising=False)
    flags, words = setup.cuda_arch_flags(no_gpu, str(nvcc))
    assert "7.5;8.0;9.0+PTX" in words and "-gencode=arch=compute_90,code=compute_90" in flags
    monkeypatch.setenv("TORCH_CUDA_ARCH_LIST", "8.6")
    assert setup.cuda_arch_flags(no_gpu, str(nvcc)) == ([], "TORCH_CUDA_ARCH_LIST=8.6")


def test_old_gcc_is_refused(tmp_path, monkeypatch):
    setup = load_setup()
    gcc = tmp_path / "g++"
    gcc.write_text('#!/bin/sh\nif [ "$1" = -dumpversion ]; then echo 9; else echo "g++ (GCC) 9.4.0"; '
                   'echo "Copyright (C) 2019 Free Software Foundation, Inc."; fi\n')
    gcc.chmod(0o755)
    monkeypatch.setenv("CXX", str(gcc))
    with pytest.raises(SystemExit, match="GCC >= 10"):
        setup.check_compiler()


def run_setup_with_fake_torch(tmp_path, torch_dir, body):
    package = torch_dir / "torch"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(body)
    env = dict(os.environ, PYTHONPATH=str(torch_dir))
    env.pop("POINTMETRICS_ALLOW_ISOLATED_BUILD", None)
    return subprocess.run([sys.executable, str(ROOT / "setup.py"), "--name"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)


def test_isolated_build_without_torch_says_what_to_type(tmp_path):
    # pip's isolated environment has no torch (pyproject.toml does not list it): setup.py stops at once.
    result = run_setup_with_fake_torch(tmp_path, tmp_path / "env", "raise ImportError('No module named torch')")
    assert result.returncode != 0
    assert "pip install --no-build-isolation ." in result.stderr
    assert "Traceback" not in result.stderr


def test_isolated_build_with_a_downloaded_torch_is_refused(tmp_path):
    site = tmp_path / "pip-build-env-abc123" / "overlay" / "lib" / "site-packages"
    result = run_setup_with_fake_torch(tmp_path, site, "__version__ = '2.13.0+cu128'\n")
    assert result.returncode != 0
    assert "temporary build environment" in result.stderr
    assert "pip install --no-build-isolation ." in result.stderr


def test_isolation_markers():
    setup = load_setup()
    assert setup.isolated_build_env("/tmp/pip-build-env-x1y2/overlay/lib/python3.11/site-packages/torch/__init__.py")
    assert setup.isolated_build_env("/tmp/build-env-abcd/lib/python3.11/site-packages/torch/__init__.py")
    assert not setup.isolated_build_env(torch.__file__)
