#!/usr/bin/env bash
# Compiles every CUDA source (compile only) for every GPU architecture we ship, against the
# installed torch headers, so CUDA code cannot rot on machines without a GPU, and prints ptxas's
# resource use per kernel and architecture (registers, stack, spills), so a kernel that starts
# spilling shows up in CI.
#
#   scripts/check_cuda_compiles.sh            # sm_75 sm_80 sm_86 sm_89 sm_90 sm_100 sm_120
#   CUDA_CHECK_ARCHS="90" scripts/check_cuda_compiles.sh      # a quicker single-arch check
#
# One nvcc call per file with one -gencode per architecture (those the installed nvcc lists; nvcc 13
# dropped everything below sm_75), at most JOBS (default 2) files at a time. The C++ standard is the
# one torch's BuildExtension uses for nvcc (c++20 from torch 2.13 on, c++17 before); setup.py does
# not force one either. The CPU wheel of torch lacks one generated header,
# c10/cuda/impl/cuda_cmake_macros.h; an empty stub stands in for it.
set -euo pipefail
cd "$(dirname "$0")/.."
NVCC=${NVCC:-nvcc}
JOBS=${JOBS:-2}
WANTED=${CUDA_CHECK_ARCHS:-"75 80 86 89 90 100 120"}

supported=$("$NVCC" --list-gpu-arch 2>/dev/null | sed -n 's/^compute_\([0-9]*\)$/\1/p')
archs=()
for arch in $WANTED; do
  if grep -qx "$arch" <<<"$supported"; then
    archs+=("$arch")
  else
    echo "check_cuda_compiles: $("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/nvcc \1/p') cannot compile sm_$arch; skipped"
  fi
done
if [ ${#archs[@]} -eq 0 ]; then
  echo "check_cuda_compiles: none of the architectures ($WANTED) is supported by $NVCC" >&2
  exit 1
fi
GENCODE=""
for arch in "${archs[@]}"; do GENCODE+=" -gencode=arch=compute_$arch,code=sm_$arch"; done

STD=$(python -c "import re, torch; v = tuple(int(x) for x in re.findall(r'\d+', torch.__version__)[:2]); print('c++20' if v >= (2, 13) else 'c++17')")
TORCH_INC=$(python -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'include'))")
PY_INC=$(python -c "import sysconfig; print(sysconfig.get_paths()['include'])")
WORK=$(mktemp -d)
if [ -n "${KEEP_LOGS:-}" ]; then echo "check_cuda_compiles: logs kept in $WORK"; else trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK/stub/c10/cuda/impl" "$WORK/logs"
touch "$WORK/stub/c10/cuda/impl/cuda_cmake_macros.h"
export NVCC STD GENCODE TORCH_INC PY_INC WORK

# shellcheck disable=SC2317  # compile_one runs through xargs
compile_one() {
  local source=$1 log start status
  log="$WORK/logs/$(echo "$source" | tr / _).log"
  start=$(date +%s)
  echo "$source" > "$log"
  # shellcheck disable=SC2086  # GENCODE is a list of flags
  if "$NVCC" -std="$STD" $GENCODE -O3 --expt-relaxed-constexpr -Werror all-warnings -Xptxas -v \
      -c "$source" -o /dev/null -I csrc -I "$WORK/stub" -I "$TORCH_INC" -I "$TORCH_INC/torch/csrc/api/include" \
      -I "$PY_INC" -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H >> "$log" 2>&1; then
    status=ok
  else
    status=FAILED
  fi
  echo "nvcc $source: $status ($(( $(date +%s) - start )) s)"
  if [ "$status" = FAILED ]; then
    grep -v '^ptxas info' "$log" | tail -n 40
    return 1
  fi
}
export -f compile_one

start=$(date +%s)
joined="${archs[*]}"
echo "check_cuda_compiles: -std=$STD, sm_${joined// /, sm_}, $JOBS files at a time"
status=0
# shellcheck disable=SC2016  # \$1 is compile_one's argument
find csrc -name '*.cu' | sort | xargs -P "$JOBS" -I{} bash -c 'compile_one "$1"' _ {} || status=1

# ptxas -v, per entry function and architecture:
#   ptxas info    : Compiling entry function '<mangled>' for 'sm_90'
#   ptxas info    : Function properties for <mangled>
#       0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads
#   ptxas info    : Used 40 registers, used 1 barriers, 392 bytes cmem[0]
# Device functions that were not inlined get their own "Function properties" (shown as "fn").
python - "$WORK/logs" <<'PY'
import pathlib, re, subprocess, sys

rows = []
for log in sorted(pathlib.Path(sys.argv[1]).glob("*.log")):
    lines = log.read_text(errors="replace").splitlines()
    source, entry, arch, pending = lines[0], None, None, None
    for line in lines[1:]:
        m = re.search(r"Compiling entry function '([^']+)' for '(sm_\w+)'", line)
        if m:
            entry, arch = m.groups()
            continue
        m = re.search(r"Function properties for (\S+)", line)
        if m:
            pending = m.group(1)
            continue
        m = re.search(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads", line)
        if m and pending and arch:
            rows.append({"file": source, "mangled": pending, "arch": arch, "fn": pending != entry,
                         "regs": "-", "stack": int(m[1]), "st": int(m[2]), "ld": int(m[3])})
            pending = None
            continue
        m = re.search(r"Used (\d+) registers", line)
        if m and entry:
            for row in reversed(rows):
                if row["mangled"] == entry and row["arch"] == arch:
                    row["regs"] = int(m[1])
                    break
names = sorted({r["mangled"] for r in rows})
try:
    demangled = subprocess.run(["c++filt"], input="\n".join(names), capture_output=True, text=True).stdout.split("\n")
except OSError:
    demangled = names
short = {}
for mangled, full in zip(names, demangled):
    name, depth = full.replace("(anonymous namespace)::", "").strip(), 0
    for i, c in enumerate(name):  # drop the parameter list: the first "(" outside template arguments
        depth += (c == "<") - (c == ">")
        if c == "(" and depth == 0:
            name = name[:i]
            break
    name = re.sub(r"^(void|auto)\s+", "", name)
    head, _, tail = name.partition("<")
    name = head.split("::")[-1] + ("<" + tail if tail else "")
    short[mangled] = name if len(name) <= 70 else name[:67] + "..."

def arch_key(arch):
    return int(re.sub(r"\D", "", arch))

rows.sort(key=lambda r: (r["file"], r["fn"], short[r["mangled"]], arch_key(r["arch"])))
table = [("file", "kernel", "arch", "regs", "stack B", "spill st/ld B")]
table += [(r["file"].removeprefix("csrc/"), short[r["mangled"]] + (" (fn)" if r["fn"] else ""), r["arch"],
           str(r["regs"]), str(r["stack"]), f"{r['st']}/{r['ld']}" + (" SPILL" if r["st"] or r["ld"] else ""))
          for r in rows]
widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
for i, row in enumerate(table):
    print(" | ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
    if i == 0:
        print("-+-".join("-" * w for w in widths))
spills = [r for r in rows if r["st"] or r["ld"]]
kernels = len({r["mangled"] for r in rows if not r["fn"]})
print(f"check_cuda_compiles: {kernels} kernels x {len({r['arch'] for r in rows})} architectures; "
      + (f"{len(spills)} kernel/arch pairs spill registers" if spills else "no register spills"))
PY
echo "check_cuda_compiles: $(( $(date +%s) - start )) s"
exit $status
