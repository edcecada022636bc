// The op table: every schema of the pointmetrics library, in one place. Backends register their
// kernels next to their sources (TORCH_LIBRARY_IMPL in *_cpu.cpp / *_cuda.cu); fake kernels and
// autograd formulas are registered in Python (pointmetrics/_ops.py).
#include <Python.h>
#include <torch/library.h>

// Importing pointmetrics._C runs the static registrations below; the module itself is empty.
extern "C" PyObject* PyInit__C(void) {
  static struct PyModuleDef module_def = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module_def);
}

TORCH_LIBRARY(pointmetrics, m) {
  // Exact K nearest neighbours of each x point among the first y_lengths[b] points of y[b].
  // dists: (B, N, K) squared Euclidean (norm=2) or L1 (norm=1) distances, computed in float32
  // (float64 for float64 inputs); idx: (B, N, K) int64. Both sorted by (distance, index); rows
  // past x_lengths and slots past y_lengths are dist 0, idx -1.
  m.def("knn(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int K, int norm) -> (Tensor, Tensor)");
  // Same contract; on CPU it builds the grid with the device-generic builder the CUDA backend uses.
  m.def("_knn_portable(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int K, int norm) -> (Tensor, Tensor)");
}
