"""Fitted scikit-learn Pipelines as influence models: the preprocessing is a fixed function of
the input, the final linear model is what influence functions differentiate.

Retraining a Pipeline refits its transformers too (a scaler's mean moves when a row is
removed); influence here holds them fixed at their fitted state, the usual first-order
treatment (a transformer's statistics move O(1/n) per removed row, their effect on the model is
second order next to the row's own gradient). Input gradients (``I_pert,loss``) are mapped back
through the chain rule where every step is a per-feature affine map; elsewhere (one-hot
encoding, imputation of categories) there is no input gradient and they are refused.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from datavalue._core.exceptions import InvalidModelError, InvalidParameterError

__all__ = ["split_pipeline", "PipelineInput"]

# Per-feature affine transformers: z = (x - shift) * factor, factor from the fitted state.
_AFFINE = {
    "StandardScaler": lambda t: (1.0 / t.scale_) if getattr(t, "scale_", None) is not None
    else None,
    "MinMaxScaler": lambda t: t.scale_,
    "MaxAbsScaler": lambda t: 1.0 / t.scale_,
    "RobustScaler": lambda t: (1.0 / t.scale_) if getattr(t, "scale_", None) is not None
    else None,
}


def split_pipeline(model: Any) -> tuple[Any, Any] | None:
    """``(preprocessing, final estimator)`` of a fitted Pipeline, or None if ``model`` is not
    a Pipeline."""
    try:
        from sklearn.pipeline import Pipeline
    except ImportError:  # pragma: no cover
        return None
    if not isinstance(model, Pipeline):
        return None
    if len(model.steps) < 2:
        return None if len(model.steps) == 0 else (None, model.steps[-1][1])
    from sklearn.utils.validation import check_is_fitted

    final = model.steps[-1][1]
    try:
        check_is_fitted(model)
    except Exception as exc:
        raise InvalidModelError("'model' is a Pipeline that is not fitted; fit it on the "
                                "training data first.") from exc
    return model[:-1], final


class PipelineInput:
    """The fitted preprocessing of a Pipeline: transforms raw inputs to the final model's
    features, and maps feature-space input gradients back to the raw inputs."""

    def __init__(self, pre: Any) -> None:
        self.pre = pre

    def transform(self, x: Any, name: str) -> np.ndarray:
        from datavalue._core.exceptions import InvalidDataError

        try:
            z = self.pre.transform(x)
        except Exception as exc:  # the transformer's own message, with the argument named
            raise InvalidDataError(f"The Pipeline's preprocessing could not transform "
                                   f"'{name}': {type(exc).__name__}: {exc}") from exc
        if hasattr(z, "toarray"):
            z = z.toarray()
        return np.asarray(z, dtype=np.float64)

    def input_factor(self) -> np.ndarray:
        """``dz/dx`` per feature (every step per-feature affine), or a clear error."""
        factor: np.ndarray | None = None
        for name, step in self.pre.steps:
            if step is None or step == "passthrough":
                continue
            kind = type(step).__name__
            get = _AFFINE.get(kind)
            f = None if get is None else get(step)
            if get is None:
                raise InvalidParameterError(
                    f"Perturbation influence needs the input gradient through every Pipeline "
                    f"step, but step {name!r} ({kind}) is not a per-feature affine map (supported:"
                    f" {', '.join(_AFFINE)}); its inputs (e.g. one-hot categories) have no "
                    "gradient. Use influence() or self_influence(), which need none, or pass the "
                    "transformed features with the final estimator.")
            if f is None:  # a scaler without scaling (with_std=False): factor 1
                continue
            factor = np.asarray(f, dtype=np.float64) if factor is None else factor * f
        return factor
