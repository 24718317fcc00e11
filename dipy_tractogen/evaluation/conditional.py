"""Checks of a conditional model, written into its card.

:func:`diversity_check` (mean pairwise MDF of streamlines generated for one
condition, relative to the real bundle's) and :func:`latent_attribute_r2`
(what the latent space encodes, Zhao et al. 2019's regression head used as
a validator).

References
----------
.. [1] Zhao Q, Adeli E, Honnorat N, Leng T, Pohl KM. Variational
   autoencoder for regression: application to brain aging analysis. MICCAI
   2019. doi:10.1007/978-3-030-32245-8_91
"""

import numpy as np

from dipy_tractogen.errors import ConditionError
from dipy_tractogen.generation.conditional import generate_conditional_streamlines
from dipy_tractogen.measures.distances import mean_pairwise_mdf

__all__ = ["diversity_check", "latent_attribute_r2"]


def _typical_combo(encoder, C_bundle):
    """The most frequent category / the median value among some seeds."""
    values = encoder.inverse_transform(C_bundle)
    combo = {}
    for spec in encoder.specs_:
        v = values[spec.name]
        if spec.kind == "categorical":
            names, counts = np.unique(v.astype(str), return_counts=True)
            combo[spec.name] = str(names[np.argmax(counts)])
        else:
            combo[spec.name] = float(np.median(v))
    return combo


def diversity_check(
    model,
    streamlines,
    bundle_ids,
    conditions,
    *,
    n=200,
    threshold=0.5,
    latent="auto",
    random_state=0,
):
    """Spread of generated streamlines within one condition vs the real bundle.

    For each bundle: the real spread is the mean pairwise MDF of (up to
    ``n``) of its training streamlines; ``n`` streamlines are generated for
    *one* condition (the bundle, the most frequent category and the median
    value of every other condition among its streamlines), without filters,
    from the model's prior (or the KDE of matching seeds for a model
    without one); their mean pairwise MDF over the real one is the bundle's
    ratio. A collapsed generator (every output alike) scores near 0.

    Parameters
    ----------
    model : keras.Model
    streamlines : ndarray (N, P, 3)
        Real streamlines in mm (the training seeds).
    bundle_ids : ndarray (N,) int
    conditions : ndarray (N, d)
        Their encoded conditions.
    n : int, optional
    threshold : float, optional
        Ratio required of every bundle (the project's bar is 0.5).
    latent : {"auto", "prior", "kde"}, optional
        Latent source (see :class:`ConditionalSampler`).
    random_state : int, optional

    Returns
    -------
    check : dict
        ``per_bundle`` (condition, real and generated spread in mm, ratio),
        ``min_ratio``, ``median_ratio``, ``threshold``, ``passed``.
    """
    enc = model.condition_encoder
    X = np.asarray(streamlines, np.float32)
    ids = np.asarray(bundle_ids)
    C = np.asarray(conditions, np.float32)
    names = (
        list(enc.spec("bundle").categories) if "bundle" in enc.condition_names else None
    )
    per_bundle = {}
    for b in np.unique(ids):
        rows = np.flatnonzero(ids == b)
        combo = _typical_combo(enc, C[rows])
        try:
            gen, _, _ = generate_conditional_streamlines(
                model,
                {k: [v] for k, v in combo.items()},
                n,
                latent=latent,
                seed=random_state,
                extrapolate=True,
            )
        except ConditionError as exc:
            per_bundle[str(b)] = {"error": str(exc)}
            continue
        real = mean_pairwise_mdf(X[rows], max_streamlines=n, seed=random_state)
        fake = mean_pairwise_mdf(gen, max_streamlines=n, seed=random_state)
        key = names[int(b)] if names else str(int(b))
        per_bundle[key] = {
            "condition": combo,
            "real_mdf_mm": real,
            "generated_mdf_mm": fake,
            "ratio": fake / real if real > 0 else float("nan"),
        }
    ratios = [v["ratio"] for v in per_bundle.values() if "ratio" in v]
    ok = bool(ratios) and all(r >= threshold for r in ratios)
    return {
        "definition": "mean pairwise MDF of streamlines generated for one "
        "condition / that of the real bundle",
        "latent": latent,
        "per_bundle": per_bundle,
        "min_ratio": float(np.min(ratios)) if ratios else float("nan"),
        "median_ratio": float(np.median(ratios)) if ratios else float("nan"),
        "threshold": float(threshold),
        "passed": ok,
    }


def latent_attribute_r2(
    model, streamlines, conditions, encoder, *, test=None, alpha=1.0
):
    """What the latent space encodes: a regression head on the latent codes.

    A ridge regression (:class:`sklearn.linear_model.Ridge`) from the
    latent codes (posterior means) to each continuous condition, and a
    ridge classifier for each categorical one, fitted on ``streamlines``
    and scored on ``test`` (or 5-fold cross-validated): Zhao et al.'s
    attribute-regression head [1]_ used after the fact as a validator. An
    AR-VAE should score high on its regularised attributes; a cVAE, whose
    decoder takes the condition from the label, need not encode it.

    Parameters
    ----------
    model : keras.Model
    streamlines : ndarray (N, P, 3)
    conditions : ndarray (N, d)
        Encoded conditions.
    encoder : ConditionEncoder
    test : tuple (streamlines, conditions), optional
        Held-out data.
    alpha : float, optional
        Ridge penalty.

    Returns
    -------
    scores : dict
        ``{name: {"r2": ...}}`` for continuous conditions,
        ``{name: {"accuracy": ...}}`` for categorical ones.

    References
    ----------
    .. [1] Zhao Q, et al. MICCAI 2019. doi:10.1007/978-3-030-32245-8_91
    """
    from sklearn.linear_model import Ridge, RidgeClassifier
    from sklearn.model_selection import cross_val_score

    C = np.asarray(conditions, np.float32)
    Z = model.encode(streamlines, C)
    if test is not None:
        Ct = np.asarray(test[1], np.float32)
        Zt = model.encode(test[0], Ct)
    out = {}
    for spec in encoder.specs_:
        block = C[:, encoder.slices_[spec.name]]
        if spec.kind == "continuous":
            y, est, metric = block[:, 0], Ridge(alpha=alpha), "r2"
        else:
            y, est, metric = block.argmax(1), RidgeClassifier(alpha=alpha), "accuracy"
        if np.unique(y).size < 2:
            continue
        if test is not None:
            bt = Ct[:, encoder.slices_[spec.name]]
            yt = bt[:, 0] if spec.kind == "continuous" else bt.argmax(1)
            est.fit(Z, y)
            score = float(est.score(Zt, yt))
            how = "held-out"
        else:
            score = float(np.mean(cross_val_score(est, Z, y, cv=5, scoring=metric)))
            how = "5-fold cross-validation"
        out[spec.name] = {metric: score, "evaluated_on": how}
    return out
