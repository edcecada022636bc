"""Benchmark protocols: each composes the metric functions of the package (it never re-derives a
formula) with a published protocol's sampling, filtering, units and conventions.

dtu.py: DTU MVS (DTUeval-python). human.py: CAPE clothed humans (ICON-2022 / ECON).
tnt.py, tnt_io.py: Tanks and Temples (the official python_toolbox evaluation).
slam.py, slam_io.py, culling.py: indoor SLAM room meshes (NICE-SLAM's eval_recon / cull_mesh and
its successors' culling variants). images.py: PSNR / SSIM / LPIPS of image folders (nerfstudio).
scoring.py: the `score` command's generic report: every point and surface metric of two files.
card.py: the metric card every result carries.
"""
