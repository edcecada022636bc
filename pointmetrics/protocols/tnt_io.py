"""Tanks and Temples files: the scene table, camera logs, mapping, alignment, crop volume, outputs.

Formats (isl-org/TanksAndTemples python_toolbox/evaluation, see :mod:`pointmetrics.protocols.tnt`):

- ``.log`` trajectory: per camera, one line of three integers (metadata) and four lines of four
  numbers, the 4x4 camera-to-world pose; the camera centre is the pose's last column.
- ``<scene>_mapping_reference.txt``: the number of sampled frames n, the number of video frames,
  then n lines ``i j``: sampled frame i is video frame j (1-based) of a full-video log.
- ``<scene>_trans.txt``: a 4x4 matrix (``np.loadtxt``), COLMAP frame -> ground-truth frame.
- ``<scene>.json``: an Open3D SelectionPolygonVolume (``bounding_polygon``, ``orthogonal_axis``,
  ``axis_min``, ``axis_max``).

Readers here are stricter than the toolbox's (which parse with ``np.fromstring`` and accept
anything): a malformed line is a ValueError naming the file and the line.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import sys

import numpy as np

__all__ = ["SCENES_TAU", "open3d", "read_crop_volume", "read_mapping", "read_point_cloud", "read_transform",
           "read_trajectory", "scene_paths", "write_outputs"]

# config.py's scenes_tau_dict (training scenes, metres): "some global parameters - do not modify".
SCENES_TAU = {
    "Barn": 0.01,
    "Caterpillar": 0.005,
    "Church": 0.025,
    "Courthouse": 0.025,
    "Ignatius": 0.003,
    "Meetingroom": 0.01,
    "Truck": 0.005,
}


def open3d():
    """Open3D, imported on first use (the protocol's crop, voxel grid and registration are Open3D's)."""
    try:
        import open3d as o3d
    except ImportError as error:
        raise RuntimeError("the Tanks and Temples protocol needs Open3D (its crop volume, voxel downsampling and "
                           "ICP are Open3D's, as in the official toolbox): pip install open3d") from error
    return o3d


def scene_paths(dataset_dir: str | os.PathLike, scene: str) -> dict[str, str]:
    """The toolbox's file names inside the scene folder (run.py)."""
    root = os.fspath(dataset_dir)
    return {
        "ground_truth": os.path.join(root, scene + ".ply"),
        "crop": os.path.join(root, scene + ".json"),
        "colmap_log": os.path.join(root, scene + "_COLMAP_SfM.log"),
        "trans": os.path.join(root, scene + "_trans.txt"),
        "mapping": os.path.join(root, scene + "_mapping_reference.txt"),
    }


def _require(path: str, what: str) -> None:
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")


def read_point_cloud(path: str | os.PathLike, what: str):
    """Open3D's ``read_point_cloud`` (a mesh file gives its vertices), with errors naming the file."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: {what} not found")
    o3d = open3d()
    with _captured_c_output() as said, o3d.utility.VerbosityContextManager(o3d.utility.VerbosityLevel.Warning):
        pcd = o3d.io.read_point_cloud(path)
    if len(pcd.points) == 0:
        # Open3D's words, without its colour codes, in our one line
        reason = " ".join(re.sub(r"\x1b\[[0-9;]*m|\[Open3D WARNING\]", "", said[0]).split())
        raise ValueError(f"{path}: {what} has no points or cannot be read" + (f" (Open3D: {reason})" if reason else ""))
    if not np.isfinite(np.asarray(pcd.points)).all():
        raise ValueError(f"{path}: {what} contains NaN or Inf coordinates")
    return pcd


@contextlib.contextmanager
def _captured_c_output():
    """Open3D's reader complains from C++ (RPly to stderr) and through its logger (Python's
    sys.stdout); keep both off the terminal (an error is one line) and hand them over for the message."""
    import io as _io
    import tempfile

    sys.stdout.flush()
    sys.stderr.flush()
    _flush_c_stdio()
    python_side = _io.StringIO()
    with tempfile.TemporaryFile(mode="w+") as sink, contextlib.redirect_stdout(python_side), \
            contextlib.redirect_stderr(python_side):
        saved = []
        try:
            for fd in (1, 2):
                saved.append((fd, os.dup(fd)))
                os.dup2(sink.fileno(), fd)
        except (OSError, ValueError):  # no real file descriptors: leave the output alone
            pass
        said: list[str] = []
        try:
            yield said
        finally:
            _flush_c_stdio()  # C stdio is fully buffered when not a terminal
            for fd, copy in saved:
                os.dup2(copy, fd)
                os.close(copy)
            sink.seek(0)
            said.append(sink.read() + " " + python_side.getvalue())


def _flush_c_stdio() -> None:
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None).fflush(None)


def read_trajectory(path: str | os.PathLike) -> np.ndarray:
    """The (N, 4, 4) poses of a ``.log`` file (float64)."""
    path = os.fspath(path)
    _require(path, "camera log (.log)")
    with open(path) as f:
        lines = [(k + 1, line.split()) for k, line in enumerate(f) if line.strip()]
    if not lines:
        raise ValueError(f"{path}: camera log is empty")
    if len(lines) % 5:
        raise ValueError(f"{path}: a camera log has 5 lines per camera (3 integers, then 4 rows of 4 numbers); "
                         f"this one has {len(lines)} non-empty lines")
    poses = np.empty((len(lines) // 5, 4, 4))
    for c in range(len(poses)):
        number, words = lines[5 * c]
        if len(words) != 3 or not all(_is_int(w) for w in words):
            raise ValueError(f"{path}: line {number}: expected a metadata line of 3 integers, got {' '.join(words)!r}")
        for r in range(4):
            number, words = lines[5 * c + 1 + r]
            try:
                row = [float(w) for w in words]
            except ValueError:
                row = []
            if len(row) != 4 or not np.isfinite(row).all():
                raise ValueError(f"{path}: line {number}: expected 4 finite numbers of a pose row, "
                                 f"got {' '.join(words)!r}")
            poses[c, r] = row
    return poses


def _is_int(word: str) -> bool:
    try:
        int(word)
    except ValueError:
        return False
    return True


def read_mapping(path: str | os.PathLike) -> tuple[int, int, np.ndarray]:
    """(n_sampled_frames, n_total_frames, (n, 2) int array of ``i j`` rows) of a mapping file."""
    path = os.fspath(path)
    _require(path, "mapping file (needed for a camera log of more than 1600 frames)")
    with open(path) as f:
        rows = [line.split() for line in f if line.strip()]
    try:
        n_sampled, n_total = int(rows[0][0]), int(rows[1][0])
        mapping = np.array([[int(a), int(b)] for a, b in rows[2:2 + n_sampled]], dtype=np.int64).reshape(-1, 2)
    except (IndexError, ValueError) as error:
        raise ValueError(f"{path}: malformed mapping file (two counts, then 'i j' lines): {error}") from None
    if len(mapping) != n_sampled:
        raise ValueError(f"{path}: declares {n_sampled} sampled frames but lists {len(mapping)}")
    return n_sampled, n_total, mapping


def read_transform(path: str | os.PathLike, what: str = "alignment (_trans.txt)") -> np.ndarray:
    """A 4x4 matrix written by ``np.savetxt`` (the toolbox reads it with ``np.loadtxt``)."""
    path = os.fspath(path)
    _require(path, what)
    try:
        matrix = np.loadtxt(path, dtype=np.float64)
    except ValueError as error:
        raise ValueError(f"{path}: not a 4x4 matrix of numbers ({error})") from None
    if matrix.shape != (4, 4) or not np.isfinite(matrix).all():
        raise ValueError(f"{path}: expected a finite 4x4 matrix, got shape {matrix.shape}")
    return matrix


def read_crop_volume(path: str | os.PathLike):
    """Open3D's SelectionPolygonVolume of a crop JSON, checked first (Open3D only warns on a bad file
    and returns a volume that crops everything away)."""
    path = os.fspath(path)
    _require(path, "crop volume (.json)")
    try:
        with open(path) as f:
            content = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from None
    polygon = content.get("bounding_polygon") if isinstance(content, dict) else None
    try:
        polygon = np.asarray(polygon, dtype=np.float64)
    except (TypeError, ValueError):
        polygon = None
    if polygon is None or polygon.ndim != 2 or polygon.shape[1] != 3 or len(polygon) < 3:
        raise ValueError(f"{path}: a crop volume needs 'bounding_polygon', a list of at least 3 [x, y, z] points")
    if content.get("orthogonal_axis", "").upper() not in ("X", "Y", "Z"):
        raise ValueError(f"{path}: 'orthogonal_axis' must be X, Y or Z, got {content.get('orthogonal_axis')!r}")
    try:
        low, high = float(content["axis_min"]), float(content["axis_max"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"{path}: a crop volume needs numeric 'axis_min' and 'axis_max'") from None
    if not low < high:
        raise ValueError(f"{path}: axis_min ({low}) must be below axis_max ({high}): the crop volume is empty")
    volume = open3d().visualization.read_selection_polygon_volume(path)
    if len(volume.bounding_polygon) < 3:
        raise ValueError(f"{path}: Open3D could not read this crop volume")
    return volume


def write_outputs(directory: str, scene: str, tau: float, plot_stretch: int, result) -> list[str]:
    """The toolbox's outputs (evaluation.py, plot.py) in ``directory``: ``<scene>.precision.ply``
    and ``<scene>.recall.ply`` (points coloured by distance, hot_r capped at 3 tau, as
    write_color_distances; with a ``distance`` property), ``<scene>.precision.txt``,
    ``<scene>.recall.txt`` (cumulative histograms), ``<scene>.prf_tau_plotstr.txt`` and the plots
    ``PR_<scene>_@d_th_0_<tau*10000>.png`` (precision and recall against distance, as plot.py)
    and ``F_<scene>_@d_th_0_<tau*10000>.png`` (the three curves P(d), R(d), F(d)). Needs matplotlib."""
    import matplotlib

    from .. import io

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    os.makedirs(directory, exist_ok=True)
    paths = []
    cmap = plt.get_cmap("hot_r")
    for name, points, dist in (("precision", result.source_points, result.precision_distances),
                               ("recall", result.target_points, result.recall_distances)):
        path = os.path.join(directory, f"{scene}.{name}.ply")
        colours = cmap(np.minimum(dist, 3 * tau) / (3 * tau))[:, :3]
        io.save_ply(path, points, colors=np.round(colours * 255), scalars={"distance": dist})
        paths.append(path)
    for name, values in (("recall", result.cum_target), ("precision", result.cum_source)):
        paths.append(os.path.join(directory, f"{scene}.{name}.txt"))
        np.savetxt(paths[-1], values)
    paths.append(os.path.join(directory, f"{scene}.prf_tau_plotstr.txt"))
    np.savetxt(paths[-1], np.array([result.precision, result.recall, result.fscore, tau, plot_stretch]))
    tag = f"{int(tau * 10000):04d}"  # plot.py's "%04d" % (dist_threshold * 10000), which truncates
    paths.append(_plot(plt, os.path.join(directory, f"PR_{scene}_@d_th_0_{tag}.png"), scene, tau, plot_stretch,
                       result, with_f=False))
    paths.append(_plot(plt, os.path.join(directory, f"F_{scene}_@d_th_0_{tag}.png"), scene, tau, plot_stretch,
                       result, with_f=True))
    return paths


def _plot(plt, path: str, scene: str, tau: float, plot_stretch: int, result, with_f: bool) -> str:
    """plot.py's figure: cumulative precision (red) and recall (blue) in percent against distance,
    a dashed line at tau, F-score in the title; with_f adds F(d) = 2 P(d) R(d) / (P(d) + R(d))."""
    fig, ax = plt.subplots(figsize=(8, 5), dpi=110)
    ax.plot(result.edges_source[1:], result.cum_source * 100, c="red", label="precision", linewidth=2.0)
    ax.plot(result.edges_target[1:], result.cum_target * 100, c="blue", label="recall", linewidth=2.0)
    if with_f:
        p, r = result.cum_source, result.cum_target
        f = np.divide(2 * p * r, p + r, out=np.zeros_like(p), where=(p + r) > 0)
        ax.plot(result.edges_source[1:], f * 100, c="green", label="f-score", linewidth=2.0)
    ax.grid(True)
    ax.axvline(x=tau, c="black", ls="dashed", linewidth=2.0)
    what = "Precision, Recall and F-score" if with_f else "Precision and Recall"
    ax.set_title(f"{what}: {scene}, {result.fscore * 100:02.2f} f-score")
    ax.set_ylabel("# of points (%)", fontsize=13)
    ax.set_xlabel("Meters", fontsize=13)
    ax.axis([0, tau * plot_stretch, 0, 100])
    ax.legend(loc="center left", bbox_to_anchor=(1, 0.5))
    fig.savefig(path, format="png", bbox_inches="tight")
    plt.close(fig)
    return path
