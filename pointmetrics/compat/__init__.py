"""Drop-in replacements for the Chamfer / EMD / point-to-surface code that research repositories
copy, one module per original: change the import line and keep the call.

Each module reproduces its original's call signature, return structure, dtypes, reductions and
padding conventions (its docstring cites the repository, path and commit it follows), but runs on
pointmetrics' exact searches: any size, any floating dtype, CPU and CUDA, gradients to both inputs.
The README's "Replacing the code you have" lists every original's conventions side by side and the
native pointmetrics function that computes the same number.

Submodules are imported on use (``from pointmetrics.compat import pytorch3d``), so that this
package costs nothing to code that does not need it.
"""
