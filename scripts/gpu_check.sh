#!/usr/bin/env bash
# One command on a machine with an NVIDIA GPU and a fresh checkout: versions, a CUDA build for this
# GPU only, the whole test suite's CUDA tests, the GPU benchmark (bench/results/<gpu>_gpu.md),
# compute-sanitizer (memcheck, racecheck) over a small selection that launches every kernel, then
# the rest of the test suite (the CPU tests) with the time left; ends with one verdict line, e.g.
#   gpu_check: PASS (build ok in 95 s, cuda tests 37 passed, memcheck clean, racecheck clean, ...)
#
#   bash scripts/gpu_check.sh
#
# Uses the torch already installed (it must be a CUDA build and see the GPU; nothing is downloaded)
# and needs nvcc (CUDA_HOME or PATH), pytest, numpy, scipy, trimesh and tqdm.
# Environment: GPU_CHECK_BUDGET (seconds for everything, default 470), GPU_CHECK_SKIP_BUILD=1
# (reuse pointmetrics/_C*.so), GPU_CHECK_LOGS (folder for the logs and a copy of the benchmark
# table; default a new temporary folder), PYTHON (default python).
# The build is `setup.py build_ext --inplace` (what `pip install --no-build-isolation -e .` runs,
# without pip): ninja keeps its objects in build/, so a second run recompiles only what changed.
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
START=$(date +%s)
BUDGET=${GPU_CHECK_BUDGET:-470}
PY=${PYTHON:-python}
LOGS=${GPU_CHECK_LOGS:-$(mktemp -d -t gpu_check.XXXXXX)}
mkdir -p "$LOGS"
results=()
failed=0

elapsed() { echo $(( $(date +%s) - START )); }
join_results() {
  local out="" item
  for item in "${results[@]}"; do out+="${out:+, }$item"; done
  echo "$out"
}
finish() {  # finish EXIT_CODE: prints the verdict line and exits
  [ -n "${GPU_CHECK_LOGS:-}" ] && cp bench/results/*_gpu.md "$LOGS"/ 2>/dev/null
  echo "gpu_check: logs in $LOGS ($(elapsed) s)"
  if [ "$1" -eq 0 ]; then
    echo "gpu_check: PASS ($(join_results))"
  else
    echo "gpu_check: FAIL ($(join_results))"
  fi
  exit "$1"
}
# run_step NAME CAP COMMAND...: runs COMMAND with a timeout of CAP seconds or the time left (keeping
# 15 s for the verdict), output in $LOGS/NAME.log; returns its exit code (124: timed out, 125: no time).
run_step() {
  local name=$1 cap=$2 left rc
  shift 2
  left=$(( BUDGET - $(elapsed) - 15 ))
  [ "$left" -lt "$cap" ] && cap=$left
  if [ "$cap" -lt 10 ]; then
    echo "== $name: skipped, no time left (GPU_CHECK_BUDGET=$BUDGET)"
    return 125
  fi
  echo "== $name (timeout $cap s): $*"
  local t0
  t0=$(date +%s)
  timeout --kill-after=10 "$cap" "$@" > "$LOGS/$name.log" 2>&1
  rc=$?
  echo "   exit $rc after $(( $(date +%s) - t0 )) s"
  if [ "$rc" -ne 0 ]; then
    echo "   last lines of $LOGS/$name.log:"
    tail -n 25 "$LOGS/$name.log" | sed 's/^/   | /'
  fi
  return $rc
}
pytest_summary() {  # the closing "N passed, M failed in Xs" line of a pytest log, without the time
  grep -E '[0-9]+ (passed|failed|error|errors|skipped|deselected)' "$1" | tail -n 1 | sed -E 's/=//g; s/ in [0-9.]+s.*//; s/^ +//; s/ +$//'
}

echo "== versions"
if command -v nvidia-smi >/dev/null 2>&1; then
  nvidia-smi --query-gpu=name,driver_version,compute_cap,memory.total --format=csv 2>&1 | sed 's/^/   /'
else
  echo "   nvidia-smi: not found"
fi
timeout 120 "$PY" - <<'EOF' 2>&1 | sed 's/^/   /'
import platform, shutil, subprocess
print(f"python {platform.python_version()}")
try:
    import torch
except ImportError as error:
    print(f"torch: not importable ({error})")
    raise SystemExit(0)
print(f"torch {torch.__version__}, built with CUDA {torch.version.cuda}, cuda available: {torch.cuda.is_available()}")
if torch.cuda.is_available():
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        print(f"device {i}: {p.name}, sm {p.major}.{p.minor}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
    print(f"CUDA driver API version {torch._C._cuda_getDriverVersion() if hasattr(torch._C, '_cuda_getDriverVersion') else '?'}")
from torch.utils.cpp_extension import CUDA_HOME
nvcc = f"{CUDA_HOME}/bin/nvcc" if CUDA_HOME else shutil.which("nvcc")
try:
    banner = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    release = next(line for line in banner.splitlines() if "release" in line)
except (TypeError, OSError, StopIteration):
    release = "not found"
print(f"CUDA_HOME {CUDA_HOME}, nvcc: {release}")
EOF

probe=$(timeout 120 "$PY" -c "import torch; print('gpu' if torch.cuda.is_available() else 'nogpu', torch.__version__, torch.version.cuda)" 2>/dev/null | tail -n 1)
if [ "${probe%% *}" != gpu ]; then
  if [ -z "$probe" ]; then
    why="torch is not importable with $PY"
  elif [ "$(echo "$probe" | awk '{print $3}')" = None ]; then
    why="torch $(echo "$probe" | awk '{print $2}') is a CPU-only build; install a CUDA build of torch"
  else
    why="torch $(echo "$probe" | awk '{print $2}') (CUDA $(echo "$probe" | awk '{print $3}')) sees no GPU: torch.cuda.is_available() is False (driver, CUDA_VISIBLE_DEVICES?)"
  fi
  echo "gpu_check: no usable GPU: $why. Nothing was built."
  results+=("no usable GPU: $why")
  finish 2
fi

CUDA_HOME_DIR=$("$PY" -c "from torch.utils.cpp_extension import CUDA_HOME; print(CUDA_HOME or '')" 2>/dev/null)
NVCC="$CUDA_HOME_DIR/bin/nvcc"
[ -x "$NVCC" ] || NVCC=$(command -v nvcc || true)
if [ -z "$CUDA_HOME_DIR" ] || [ -z "$NVCC" ]; then
  results+=("no CUDA toolkit: torch finds no CUDA_HOME/nvcc, so the build would have no CUDA kernels")
  finish 2
fi

missing=$("$PY" -c "
import importlib.util
print(' '.join(m for m in ('pytest', 'numpy', 'scipy', 'trimesh', 'tqdm', 'setuptools') if importlib.util.find_spec(m) is None))")
if [ -n "$missing" ]; then
  echo "== installing missing packages: $missing"
  # shellcheck disable=SC2086  # one word per package
  timeout 120 "$PY" -m pip install -q --retries 0 --timeout 15 $missing > "$LOGS/pip.log" 2>&1 || {
    results+=("missing Python packages: $missing (pip install failed, see $LOGS/pip.log)")
    finish 2
  }
fi

# Build for this GPU only (the newest architecture nvcc knows, as PTX, if nvcc is older than the GPU).
cap=$("$PY" -c "import torch; print('{}.{}'.format(*torch.cuda.get_device_capability(0)))")
arch=$cap
if ! "$NVCC" --list-gpu-arch 2>/dev/null | grep -qx "compute_${cap/./}"; then
  newest=$("$NVCC" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_\([0-9]*\)$/\1/p' | sort -n | tail -n 1)
  [ -n "$newest" ] && arch="${newest%?}.${newest: -1}+PTX"
  echo "gpu_check: nvcc cannot compile sm_${cap/./}; building $arch instead"
fi
if [ "${GPU_CHECK_SKIP_BUILD:-0}" = 1 ] && ls pointmetrics/_C*.so >/dev/null 2>&1; then
  results+=("build reused")
else
  command -v ninja >/dev/null 2>&1 || "$PY" -c "import ninja" 2>/dev/null || \
    echo "gpu_check: ninja not found; torch falls back to a slower serial build"
  t0=$(date +%s)
  if TORCH_CUDA_ARCH_LIST="$arch" MAX_JOBS=$(nproc) run_step build 330 "$PY" setup.py build_ext --inplace; then
    results+=("build ok in $(( $(date +%s) - t0 )) s for sm $arch")
  else
    rc=$?
    [ $rc -eq 124 ] && results+=("build timed out") || results+=("build failed (exit $rc)")
    finish 1
  fi
fi
grep -h "pointmetrics: building" "$LOGS/build.log" 2>/dev/null | sed 's/^/   /'
if ! "$PY" -c "import pointmetrics, pointmetrics._build_info as b; assert b.WITH_CUDA, 'built without CUDA kernels'" \
    > "$LOGS/import.log" 2>&1; then
  tail -n 5 "$LOGS/import.log"
  results+=("the build does not import, or has no CUDA kernels (see $LOGS/import.log)")
  finish 1
fi

# The whole suite on CUDA: every test whose name or device parameter says cuda (tests/test_cuda.py
# and each test that takes the `device` fixture). Skips are reported, not failed: the second-GPU
# parameters skip on a machine with one GPU.
run_step cuda_tests 180 "$PY" -m pytest -q -rs -p no:cacheprovider tests -k cuda
rc=$?
summary=$(pytest_summary "$LOGS/cuda_tests.log")
if [ $rc -eq 0 ] && grep -q passed <<<"$summary"; then
  results+=("cuda tests $summary")
  other_skips=$(grep -E '^SKIPPED' "$LOGS/cuda_tests.log" | grep -vc 'no second GPU')
  [ "${other_skips:-0}" -gt 0 ] && echo "   $other_skips skip lines for other reasons than a missing second GPU: see $LOGS/cuda_tests.log"
else
  failed=1
  [ $rc -eq 124 ] && results+=("cuda tests timed out") || results+=("cuda tests: ${summary:-exit $rc}")
fi

# The GPU benchmark before the sanitizer: its tables are what a short GPU slot must bring back.
if run_step bench 150 "$PY" scripts/bench_gpu.py --device cuda; then
  results+=("benchmarks written to $(sed -n 's/^bench_gpu: wrote //p' "$LOGS/bench.log" | tail -n 1)")
  sed -n '/^| case/,$p' "$LOGS/bench.log" | grep '^|' | sed 's/^/   /'
else
  rc=$?
  failed=1
  [ $rc -eq 124 ] && results+=("benchmarks timed out") || results+=("benchmarks failed (exit $rc)")
fi

# compute-sanitizer over a selection that launches every kernel once, on small inputs: kNN brute
# force, grid and kd-tree paths and the D>3 scan, Chamfer backward, BVH build, closest triangle and
# winding number, the auction, the greedy reduction, the rasteriser (small and large triangles).
SAN_K="cpu_and_cuda_agree[dtype0-5-500-700] or paths_agree or high_dimension or chamfer_and_gradients"
SAN_K+=" or mesh_ops_cpu_and_cuda_agree[dtype0] or emd_cpu_and_cuda_agree[dtype0-1] or greedy_reduction"
SAN_K+=" or rasterize_cpu_and_cuda_agree[dtype0-False] or large_triangles"
SANITIZER=$(command -v compute-sanitizer || true)
for candidate in "$CUDA_HOME_DIR/bin/compute-sanitizer" "$CUDA_HOME_DIR/compute-sanitizer/compute-sanitizer"; do
  [ -z "$SANITIZER" ] && [ -x "$candidate" ] && SANITIZER=$candidate
done
if [ -z "$SANITIZER" ]; then
  echo "gpu_check: compute-sanitizer not found (PATH, \$CUDA_HOME/bin); sanitizer runs skipped"
  results+=("sanitizer skipped (not installed)")
else
  for tool in memcheck racecheck; do
    # No caching allocator under memcheck, so that an access past a tensor's end is seen (torch
    # reads the variable's presence, so it is set for memcheck only).
    prefix=(env)
    [ $tool = memcheck ] && prefix+=(PYTORCH_NO_CUDA_MEMORY_CACHING=1)
    run_step "$tool" 90 "${prefix[@]}" "$SANITIZER" --tool "$tool" --error-exitcode 86 --print-limit 20 \
      "$PY" -m pytest -q -p no:cacheprovider tests/test_cuda.py -k "$SAN_K"
    rc=$?
    tests=$(pytest_summary "$LOGS/$tool.log")
    errors=$(grep -E "(ERROR|RACECHECK) SUMMARY" "$LOGS/$tool.log" | tail -n 1 | sed 's/^=* *//')
    if [ $rc -eq 0 ]; then
      results+=("$tool clean ($tests)")
    else
      failed=1
      if [ $rc -eq 124 ]; then results+=("$tool timed out")
      elif [ $rc -eq 86 ]; then results+=("$tool: $errors")
      else results+=("$tool: ${tests:-exit $rc} ${errors}"); fi
    fi
  done
fi

# The rest of the suite (the CPU tests, which CI runs on every change) with the time left. Running
# out of time here is reported, not failed; a failing test fails the check.
run_step rest_of_suite 400 "$PY" -m pytest -v -p no:cacheprovider tests --ignore tests/test_cuda.py -k "not cuda"
rc=$?
summary=$(pytest_summary "$LOGS/rest_of_suite.log")
if [ $rc -eq 0 ]; then
  results+=("rest of suite $summary")
elif [ $rc -eq 124 ] || [ $rc -eq 125 ]; then
  passed=$(grep -c ' PASSED' "$LOGS/rest_of_suite.log" 2>/dev/null)
  bad=$(grep -cE ' (FAILED|ERROR)' "$LOGS/rest_of_suite.log" 2>/dev/null)
  results+=("rest of suite (CPU tests) cut at the time limit: ${passed:-0} passed, ${bad:-0} failed before it")
  [ "${bad:-0}" -gt 0 ] && failed=1
else
  failed=1
  results+=("rest of suite: ${summary:-exit $rc}")
fi

finish $failed
