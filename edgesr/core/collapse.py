"""The reparameterization protocol: ``model.collapse() -> nn.Module``, checked.

Every model with a training-only form implements ``collapse()`` returning a *new* plain
module that computes ``clip(model(x), 0, 1)``. :func:`collapse_checked` runs both on a real
photograph and reports the difference, so no caller ships an unchecked deploy form.
"""

from __future__ import annotations

import numpy as np
import torch

from edgesr.core.complexity import count_params
from edgesr.core.data import embedded_image
from edgesr.core.errors import EdgesrError
from edgesr.core.evaluate import model_input

TOLERANCE = 1e-5


def collapse_checked(model: torch.nn.Module, tolerance: float = TOLERANCE):
    """Collapse ``model`` and compare both forms on a real photo crop (96 x 128 LR).

    Returns:
        ``(deploy_module, {"params", "params_deploy", "max_abs_err"})``.

    Raises:
        EdgesrError: the model has no ``collapse()`` or the forms differ by more than ``tolerance``.
    """

    if not hasattr(model, "collapse"):
        raise EdgesrError(f"model {getattr(model, 'registry_name', type(model).__name__)!r} has no training-only form to collapse")
    model = model.eval()
    deploy = model.collapse().eval()
    lr = embedded_image("chelsea")[100:196, 150:278]
    x = torch.from_numpy(model_input(lr, model.contract))
    # Compare against the expanded form (two convs per linear block) where the model has one,
    # so the check covers the algebra and not only the collapsed-forward training path.
    form = getattr(model, "training_form", None)
    try:
        if form is not None:
            model.training_form = "expanded"
        with torch.no_grad():
            err = float((torch.clamp(model(x), 0, 1) - deploy(x)).abs().max())
    finally:
        if form is not None:
            model.training_form = form
    if not np.isfinite(err) or err > tolerance:
        raise EdgesrError(f"collapsed model differs from the trained one by {err:.3g} (> {tolerance:g})")
    return deploy, {"params": count_params(model), "params_deploy": count_params(deploy), "max_abs_err": err}
