"""Novel-view image metrics of two folders: PSNR, SSIM and LPIPS per image and their means.

Follows nerfstudio's evaluation (nerfstudio-project/nerfstudio, commit
50e0e3c70c775e89333256213363badbf074f29d): ``nerfstudio/models/nerfacto.py``
``get_image_metrics_and_images`` with the metrics built in ``populate_modules``, ``ns-eval``'s mean
over images (``Pipeline.get_average_eval_image_metrics``), and
``model_components/renderers.py`` ``RGBRenderer.blend_background``. Its steps:

1. gt_rgb = blend_background(gt): an RGBA image is composed as rgb * alpha + bg * (1 - alpha);
   an RGB image is kept. nerfacto's default background ("last_sample", and "random") is black
   at evaluation; ``background=`` sets another colour. (A prediction with alpha, which nerfacto
   never has since its renders are already composed, is composed the same way here.)
2. Images as (1, 3, H, W) in [0, 1].
3. psnr = PeakSignalNoiseRatio(data_range=1.0)(gt, pred): 10 log10(1 / MSE) over all pixels and
   channels -> ``pm.psnr(pred, gt, data_range=1.0)``.
4. ssim = torchmetrics' functional structural_similarity_index_measure(gt, pred) with its
   defaults: Gaussian window 11 x 11, sigma 1.5, k1 0.01, k2 0.03, reflect padding then the
   border of 5 cropped (so only windows inside the image count), mean over pixels and channels,
   and data_range=None, i.e. L = max(max(gt) - min(gt), max(pred) - min(pred)) per image, not 1
   -> ``pm.ssim(pred, gt, data_range=L)`` ("valid" windows; equal to that crop).
5. lpips = LearnedPerceptualImagePatchSimilarity(normalize=True)(gt, pred): LPIPS v0.1 with
   AlexNet (torchmetrics' default net), inputs in [0, 1] mapped to [-1, 1]
   -> ``pm.lpips(pred, gt, net="alex", normalize=True)``; ``lpips_net`` may choose vgg/squeeze.
6. The reported numbers are the arithmetic means over the images of each metric.

Where this differs from a nerfstudio run: images are read from files (8- or 16-bit PNG/JPG, so
predictions are quantised, where ns-eval scores the float renders); files are matched by name
(without extension) across the two folders. Masks (``mask_dir``) are not part of nerfstudio's
evaluation; here they follow NeuS' masked PSNR (Wang et al. 2021, ``exp_runner.py``): the mask is
binarised at 0.5 and PSNR averages over the mask's pixels only (``pm.psnr(mask=)``), while SSIM
and LPIPS see both images composed on the background outside the mask.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..image import psnr, ssim
from ..lpips import LPIPS
from .card import MetricCard, file_sha256

__all__ = ["ImageMetrics", "ImagesResult", "images_eval", "read_image"]

REFERENCE = ("nerfstudio-project/nerfstudio nerfstudio/models/nerfacto.py@50e0e3c70c775e89333256213363badbf074f29d; "
             "richzhang/PerceptualSimilarity lpips/lpips.py@082bb24f84c091ea94de2867d34c4544f68e0963")
EXTENSIONS = (".png", ".jpg", ".jpeg", ".exr")
CONVENTIONS = {
    "psnr": "10 log10(1 / MSE), data range 1, over all pixels and RGB channels (masked: mask pixels only); "
            "higher is better",
    "ssim": "Gaussian 11x11 window, sigma 1.5, valid windows, population covariance, data range max(range(pred), "
            "range(gt)) per image (torchmetrics' default, as nerfacto calls it); higher is better",
    "lpips": "LPIPS v0.1 (lpips 0.1.4), inputs in [0, 1] mapped to [-1, 1] (normalize=True); lower is better",
}


@dataclass
class ImageMetrics:
    """One image pair's numbers (``lpips`` None when LPIPS is off)."""

    name: str
    size: tuple[int, int]
    psnr: float
    ssim: float
    lpips: float | None


@dataclass
class ImagesResult:
    """Per-image metrics, their means over the images, and the metric card."""

    images: list[ImageMetrics]
    mean: dict[str, float]
    card: MetricCard
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"images": [vars(m) | {"size": list(m.size)} for m in self.images], "mean": self.mean,
                "count": len(self.images), "conventions": self.card.metrics, "notes": self.notes,
                "card": self.card.as_dict()}


def read_image(path: str) -> tuple[np.ndarray, np.ndarray | None]:
    """(H, W, 3) float64 RGB in [0, 1] and an (H, W) alpha or None. PNG/JPG through Pillow
    (8-bit / 255, 16-bit / 65535; grey images repeated over RGB); EXR through imageio, as stored."""
    ext = os.path.splitext(path)[1].lower()
    if ext == ".exr":
        try:
            import imageio.v3 as iio
        except ImportError:
            raise ValueError(f"{path}: reading EXR needs imageio with an EXR plugin (pip install imageio "
                             "OpenEXR, or imageio[freeimage])") from None
        try:
            with warnings.catch_warnings():  # imageio's plugin deprecation notices are not the user's concern
                warnings.simplefilter("ignore")
                data = np.asarray(iio.imread(path), dtype=np.float64)
        except Exception as error:  # noqa: BLE001 - any plugin failure: say which file and what to install
            detail = " ".join(str(error).split())[:160]
            raise ValueError(f"{path}: could not read EXR ({type(error).__name__}: {detail}); install an EXR "
                             "plugin for imageio (pip install OpenEXR, or imageio[freeimage])") from None
    else:
        try:
            from PIL import Image
        except ImportError:
            raise ValueError(f"{path}: reading PNG/JPG needs Pillow (pip install pillow)") from None
        try:
            with Image.open(path) as im:
                if im.mode == "P":
                    im = im.convert("RGBA" if "transparency" in im.info else "RGB")
                elif im.mode in ("1", "CMYK", "YCbCr", "LAB", "HSV"):
                    im = im.convert("RGB")
                data = np.asarray(im)
        except (OSError, ValueError) as error:
            raise ValueError(f"{path}: not a readable image ({' '.join(str(error).split())})") from None
        # 8-bit modes / 255; 16-bit PNGs (Pillow's "I;16" and "I") / 65535; "F" is already float.
        scale = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0, np.dtype(np.int32): 65535.0}.get(
            data.dtype, 1.0)
        data = data.astype(np.float64) / scale
    if data.ndim == 2:
        data = data[..., None]
    channels = data.shape[-1]
    if data.ndim != 3 or channels not in (1, 2, 3, 4):
        raise ValueError(f"{path}: expected a grey, grey+alpha, RGB or RGBA image, got shape {data.shape}")
    alpha = data[..., -1] if channels in (2, 4) else None
    rgb = data[..., :1].repeat(3, -1) if channels in (1, 2) else data[..., :3]
    if not np.isfinite(rgb).all() or rgb.min(initial=0) < 0 or rgb.max(initial=0) > 1:
        raise ValueError(f"{path}: values outside [0, 1] (min {rgb.min():.4g}, max {rgb.max():.4g}); "
                         "the metrics take images in [0, 1] (tone-map HDR images first)")
    return rgb, alpha


def _index(folder: str, what: str) -> dict[str, str]:
    """{stem: file name} of the images in ``folder``; a stem present twice is an error."""
    if not os.path.isdir(folder):
        raise ValueError(f"{what} {folder} is not a folder")
    found: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        stem, ext = os.path.splitext(name)
        if ext.lower() not in EXTENSIONS or not os.path.isfile(os.path.join(folder, name)):
            continue
        if stem in found:
            raise ValueError(f"{what} {folder} has two images named {stem}: {found[stem]} and {name}")
        found[stem] = name
    if not found:
        raise ValueError(f"{what} {folder} has no images ({', '.join(EXTENSIONS)})")
    return found


def _list(names) -> str:
    names = sorted(names)
    return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")


def _compose(rgb: np.ndarray, alpha: np.ndarray | None, background: np.ndarray) -> np.ndarray:
    return rgb if alpha is None else rgb * alpha[..., None] + background * (1 - alpha[..., None])


def images_eval(pred_dir: str, gt_dir: str, mask_dir: str | None = None,
                background: tuple[float, float, float] = (0.0, 0.0, 0.0), lpips_net: str | None = "alex",
                lpips_model: LPIPS | None = None, device: str | torch.device = "cpu",
                progress: Callable[[str], None] | None = None, lpips_backbone_weights: str | None = None,
                lpips_head_weights: str | None = None) -> ImagesResult:
    """Scores every image of ``pred_dir`` against the same-named image of ``gt_dir`` (see the module
    docstring for the convention). ``lpips_net=None`` skips LPIPS; ``lpips_model`` supplies a built
    network (its weights as loaded); ``lpips_backbone_weights``/``lpips_head_weights`` are passed to
    :class:`pointmetrics.LPIPS`. The folders are checked before the network is loaded. Images are
    read and scored one at a time (bounded memory)."""
    if len(background) != 3 or not all(0 <= float(c) <= 1 for c in background):
        raise ValueError(f"background must be three values in [0, 1], got {background!r}")
    pred_names, gt_names = _index(pred_dir, "prediction folder"), _index(gt_dir, "ground-truth folder")
    if set(pred_names) != set(gt_names):
        only_p, only_g = set(pred_names) - set(gt_names), set(gt_names) - set(pred_names)
        parts = ([f"only in {pred_dir}: {_list(pred_names[s] for s in only_p)}"] if only_p else []) + \
                ([f"only in {gt_dir}: {_list(gt_names[s] for s in only_g)}"] if only_g else [])
        raise ValueError("the folders' images do not match by name: " + "; ".join(parts))
    mask_names = _index(mask_dir, "mask folder") if mask_dir is not None else {}
    if mask_dir is not None and set(gt_names) - set(mask_names):
        raise ValueError(f"no mask in {mask_dir} for {_list(gt_names[s] for s in set(gt_names) - set(mask_names))}")
    model = lpips_model
    if model is None and lpips_net is not None:
        if progress:
            progress("loading LPIPS")
        model = LPIPS(lpips_net, backbone_weights=lpips_backbone_weights, head_weights=lpips_head_weights).to(device)
    bg = np.asarray(background, dtype=np.float64)
    hashes: dict[str, str] = {}
    results = []
    for stem in sorted(gt_names):
        p_path, g_path = os.path.join(pred_dir, pred_names[stem]), os.path.join(gt_dir, gt_names[stem])
        if progress:
            progress(pred_names[stem])
        (p_rgb, p_alpha), (g_rgb, g_alpha) = read_image(p_path), read_image(g_path)
        if p_rgb.shape != g_rgb.shape:
            raise ValueError(f"{p_path} is {p_rgb.shape[1]}x{p_rgb.shape[0]} but {g_path} is "
                             f"{g_rgb.shape[1]}x{g_rgb.shape[0]} (width x height)")
        p_img, g_img = _compose(p_rgb, p_alpha, bg), _compose(g_rgb, g_alpha, bg)
        mask = None
        if mask_dir is not None:
            m_path = os.path.join(mask_dir, mask_names[stem])
            m_rgb, m_alpha = read_image(m_path)
            if m_rgb.shape != g_rgb.shape:
                raise ValueError(f"mask {m_path} is {m_rgb.shape[1]}x{m_rgb.shape[0]} but {g_path} is "
                                 f"{g_rgb.shape[1]}x{g_rgb.shape[0]}")
            mask = (m_rgb.mean(-1) if m_alpha is None else m_alpha) > 0.5
            if not mask.any():
                raise ValueError(f"mask {m_path} selects no pixel (no value above 0.5)")
            p_img, g_img = (np.where(mask[..., None], img, bg) for img in (p_img, g_img))
            hashes[f"mask/{mask_names[stem]}"] = file_sha256(m_path)
        hashes[f"pred/{pred_names[stem]}"] = file_sha256(p_path)
        hashes[f"gt/{gt_names[stem]}"] = file_sha256(g_path)
        # float64 for PSNR and SSIM (exact up to rounding); LPIPS runs in the network's dtype.
        p_t = torch.from_numpy(np.ascontiguousarray(p_img.transpose(2, 0, 1)))[None]
        g_t = torch.from_numpy(np.ascontiguousarray(g_img.transpose(2, 0, 1)))[None]
        mask_t = None if mask is None else torch.from_numpy(mask)[None, None]
        value_psnr = float(psnr(p_t, g_t, mask=mask_t, data_range=1.0))
        data_range = max(float(p_t.max() - p_t.min()), float(g_t.max() - g_t.min()))
        # Two constant images: torchmetrics would divide 0 by 0; their SSIM is 1 when equal, any range works.
        value_ssim = float(ssim(p_t, g_t, data_range=data_range if data_range > 0 else 1.0))
        value_lpips = None
        if model is not None:
            dev = model.shift.device
            with torch.no_grad():
                value_lpips = float(model(p_t.to(dev), g_t.to(dev), normalize=True)[0])
        results.append(ImageMetrics(pred_names[stem], (p_rgb.shape[0], p_rgb.shape[1]), value_psnr, value_ssim,
                                    value_lpips))
    mean = {"psnr": _mean([r.psnr for r in results]), "ssim": _mean([r.ssim for r in results])}
    if model is not None:
        mean["lpips"] = _mean([r.lpips for r in results])
    notes = []
    if any(math.isinf(r.psnr) for r in results):
        notes.append("identical images give PSNR = inf, so the mean PSNR is inf")
    metrics = {k: v for k, v in CONVENTIONS.items() if k in mean}
    card = MetricCard(
        protocol="novel-view image metrics (nerfstudio nerfacto / ns-eval)",
        reference=REFERENCE,
        units="PSNR in dB; SSIM and LPIPS unitless; means over images",
        metrics=metrics,
        parameters={"background": [float(c) for c in background], "lpips_net": None if model is None else
                    model.net_name, "lpips_weights": None if model is None or model.weight_files is None else
                    [os.path.basename(f) for f in model.weight_files], "mask": "binarised at 0.5; PSNR over "
                    "the mask, SSIM/LPIPS on images composed on the background outside it" if mask_dir else None,
                    "ssim_window": "gaussian 11x11 sigma 1.5", "matching": "file name without extension"},
        inputs={"pred_dir": os.fspath(pred_dir), "gt_dir": os.fspath(gt_dir)} |
               ({"mask_dir": os.fspath(mask_dir)} if mask_dir else {}),
        input_sha256=hashes,
    )
    return ImagesResult(results, mean, card, notes)


def _mean(values: list[float]) -> float:
    return float(np.mean(values)) if values else math.nan
