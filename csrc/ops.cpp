// The op table: every schema of the pointmetrics library, in one place. Backends register their
// kernels next to their sources (TORCH_LIBRARY_IMPL in *_cpu.cpp / *_cuda.cu); fake kernels are
// registered in Python (pointmetrics/_ops.py). No op has an autograd formula: the ops search, and
// the Python layer recomputes the differentiable values from what they find, in torch.
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

  // Order of (B, N, 3) points in a balanced kd-tree with leaves of 8 (spatial/point_tree.h): (B, S)
  // int64 original indices, S = 8 * leaves (a power of two), -1 past lengths[b].
  m.def("kd_order(Tensor points, Tensor lengths) -> Tensor");
  // The TriangleFrame (mesh/triangle.h) of each of the first F slots of a tree: (B, F, 120) uint8,
  // zero past face_lengths[b]. tris: (B, S, 3, 3) corners in tree order, F <= S.
  m.def("triangle_frames(Tensor tris, Tensor face_lengths, int faces) -> Tensor");
  // Exact closest point of each mesh to each point (mesh/mesh_tree.h). tris: (B, S, 3, 3)
  // triangle corners in kd_order of their centroids; face: (B, S) their face indices; lo, hi:
  // (B, 2 * S / 8, 3) node boxes; frames from triangle_frames; slot_boxes (B, S / 4, 24) and quads
  // (B, max(S / 16, 1), 24): triangle boxes and the boxes of nodes 4i..4i+3, four side by side
  // (mesh_tree.h kBox4). Returns squared distances (B, N), face indices (B, N), barycentric
  // weights (B, N, 3) and closest points (B, N, 3); 0 / -1 / 0 / 0 past point_lengths or for
  // empty meshes.
  m.def("closest_triangle(Tensor points, Tensor point_lengths, Tensor tris, Tensor face, Tensor lo, Tensor hi, "
        "Tensor face_lengths, Tensor frames, Tensor slot_boxes, Tensor quads) -> (Tensor, Tensor, Tensor, Tensor)");
  // Generalised winding number (B, N) of each mesh at each point, with float64 node moments
  // centre (B, nodes, 3), normal_sum (B, nodes, 3), moment (B, nodes, 9), radius (B, nodes) and
  // the far-field criterion |p - centre| > beta * radius.
  m.def("winding_number(Tensor points, Tensor point_lengths, Tensor tris, Tensor face, Tensor lo, Tensor hi, "
        "Tensor face_lengths, Tensor centre, Tensor normal_sum, Tensor moment, Tensor radius, float beta) -> Tensor");

  // Optimal assignment between x[b, :x_lengths[b]] and y[b, :y_lengths[b]] by the eps-scaling
  // auction algorithm (emd/auction.h) for costs |x - y|^p, p in {1, 2}, within relative accuracy
  // rel_tol. The smaller set bids. Returns the index into y of each x (B, N) int64 (-1
  // unmatched) and, per problem: the assignment's cost (sum over matched pairs) and the dual lower
  // bound on the optimal cost, (B,) float64; the eps of the last phase (B,) float64; bidding rounds
  // and eps-scaling phases (B,) int64; complete (B,) bool, false if max_rounds ran out first.
  m.def("auction_assignment(Tensor x, Tensor y, Tensor x_lengths, Tensor y_lengths, int p, float rel_tol, "
        "int max_rounds) -> (Tensor assignment, Tensor cost, Tensor lower_bound, Tensor eps, Tensor rounds, "
        "Tensor phases, Tensor complete)");

  // DTUeval-python's greedy reduction of (N, 3) points: visiting them in index order, a point is
  // kept unless an earlier kept point lies within `radius` (inclusive). Returns an (N,) bool mask.
  m.def("greedy_radius_keep(Tensor points, float radius) -> Tensor");

  // Hard z-buffer rasterisation (raster/raster.h) of the faces (B, F, 3) of B meshes, each seen
  // in C views given as clip-space vertices clip (B, C, V, 4); faces past face_lengths[b] are
  // ignored. Returns per pixel the front-most face (B, C, H, W) int64 (-1: none), its
  // perspective-correct barycentric weights (B, C, H, W, 3) and NDC depth (B, C, H, W) (+inf: none).
  m.def("rasterize_triangles(Tensor clip, Tensor faces, Tensor face_lengths, int height, int width) "
        "-> (Tensor, Tensor, Tensor)");
}
