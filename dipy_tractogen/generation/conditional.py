"""Conditional generation: requested conditions -> latents -> decode -> filter -> write.

For models trained with conditions (:mod:`dipy_tractogen.models.variational`,
or any model whose seed bank records the seeds' conditions), the generation
pipeline of :mod:`dipy_tractogen.generation.pipeline` with a
:class:`~dipy_tractogen.generation.sources.ConditionalSource`:

1. **Request.** Values for any subset of the model's conditions
   (``{"bundle": ["arch"], "age": [30, 50, 70]}``), checked against what the
   model was trained on (:meth:`ConditionEncoder.validate
   <dipy_tractogen.models.conditions.ConditionEncoder.validate>`: an unknown
   label or an out-of-range value raises
   :class:`~dipy_tractogen.errors.ConditionError` unless ``extrapolate``).
   Several values make a sweep: every combination gets an equal share of
   the streamlines (:func:`~dipy_tractogen.models.conditions.condition_grid`).
   Conditions left out are drawn, per streamline, from the seeds that match
   the requested categories, weighed by the closeness of their continuous
   conditions to the requested values (their empirical joint distribution).
2. **Latents**
   (:class:`~dipy_tractogen.generation.sources.ConditionalSampler`).
   ``latent="prior"``: from the model's prior (``N(0, I)`` for the VAE
   family, the requested bundle's component for the AAE, with the AR-VAE's
   attribute dimensions set from the requested values); ``latent="kde"``
   (the default when the model carries seeds): a conditional KDE, a
   Gaussian KDE on the seeds of the requested categories weighed by a
   Gaussian kernel on the distance of their continuous conditions to the
   requested values (a Nadaraya-Watson-style estimate of ``p(z | c)`` that
   mixes neighbouring subjects rather than copying one), which also serves
   models without a prior (the plain FINTA autoencoder).
3. **Decoding** with the condition rows (conditional decoders), in chunks.
4. **Filters**: length and white-matter mask (the FINTA latent filter does
   not apply: the latent codes of a conditional model do not identify the
   bundle, the label does).
5. **Writing**: each streamline's conditions go into its
   data_per_streamline (``bundle`` as an id, the others as
   ``condition_<name>``: a value, or a category code), and the request,
   the sampler and the filters into the provenance.

The functions here are the conditional spellings of
:func:`~dipy_tractogen.generation.pipeline.generate_tractogram` and
:func:`~dipy_tractogen.generation.pipeline.generate_streamlines` with
``source=ConditionalSource(request, ...)``. The conditional checks written
into model cards are in :mod:`dipy_tractogen.evaluation.conditional`.
"""

from dipy_tractogen.generation.pipeline import (
    generate_streamlines,
    generate_tractogram,
    iter_generate,
)
from dipy_tractogen.generation.sources import (
    LATENT_SOURCES as LATENT_SOURCES,
)
from dipy_tractogen.generation.sources import (
    ConditionalSampler as ConditionalSampler,
)
from dipy_tractogen.generation.sources import (
    ConditionalSource,
)
from dipy_tractogen.generation.sources import (
    resolve_request as resolve_request,
)

__all__ = [
    "iter_conditional_generate",
    "generate_conditional_streamlines",
    "generate_conditional_tractogram",
]


def iter_conditional_generate(
    model,
    request,
    n_streamlines,
    *,
    latent="auto",
    bandwidth=0.025,
    extrapolate=False,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    random_state=None,
    report=None,
):
    """Yield chunks of conditionally generated, filtered streamlines.

    Parameters
    ----------
    model : keras.Model
    request : dict of str to value or list, or ConditionalSampler
        Requested values per condition (a sweep for several values).
    n_streamlines : int
        Total count, shared equally by the combinations of the request.
    latent : {"auto", "prior", "kde"}, optional
    bandwidth : float, optional
    extrapolate : bool, optional
    filters : FilterPipeline, optional
    chunk_size, budget : optional
        As for :func:`~dipy_tractogen.generation.pipeline.iter_generate`.
    random_state : None, int or numpy.random.Generator
    report : GenerationReport, optional
        Updated in place; its keys are combination indices.

    Yields
    ------
    streamlines : ndarray (K, P, 3) float32
    conditions : ndarray (K, n_conditions) float32
        Encoded conditions each streamline was decoded with.
    combos : ndarray (K,) int
        Combination index of each streamline.
    """

    source = ConditionalSource(
        request, latent=latent, bandwidth=bandwidth, extrapolate=extrapolate
    ).fit(model)
    for X, labels, rows in iter_generate(
        source.decoder(model),
        source,
        source.counts(n_streamlines),
        filters=filters,
        chunk_size=chunk_size,
        budget=budget,
        random_state=random_state,
        report=report,
    ):
        yield X, source.conditions(rows), labels


def generate_conditional_streamlines(
    model,
    request,
    n_streamlines=1000,
    *,
    latent="auto",
    bandwidth=0.025,
    condition_bandwidth=0.1,
    extrapolate=False,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    seed=0,
):
    """Generate streamlines for requested conditions, in memory.

    Parameters
    ----------
    model : keras.Model, str or path-like
        A trained model or its ``.keras`` file.
    request : dict of str to value or list
        For example ``{"bundle": "arch", "age": [30, 70]}``.
    n_streamlines : int, optional
        Total count (shared equally by the combinations).
    latent : {"auto", "prior", "kde"}, optional
    bandwidth : float, optional
    condition_bandwidth : float, optional
        Width of the kernel that weighs the seeds by the closeness of their
        continuous conditions to the requested values, as a fraction of each
        condition's training range (see
        :class:`~dipy_tractogen.generation.sources.ConditionalSampler`).
    extrapolate : bool, optional
    filters : FilterSettings, FilterPipeline, "default" or None, optional
        None: no filter (see
        :func:`~dipy_tractogen.generation.pipeline.generate_streamlines`).
    chunk_size, budget : optional
    seed : int, optional

    Returns
    -------
    streamlines : ndarray (N, P, 3) float32
    values : dict of str to ndarray (N,)
        Each condition's value per streamline (category names for
        categorical conditions).
    report : GenerationReport
        Keyed by combination (``"bundle=arch, age=30"``).
    """

    source = ConditionalSource(
        request,
        latent=latent,
        bandwidth=bandwidth,
        condition_bandwidth=condition_bandwidth,
        extrapolate=extrapolate,
    )
    return generate_streamlines(
        model,
        n_streamlines,
        source=source,
        seed=seed,
        filters=filters,
        chunk_size=chunk_size,
        budget=budget,
    )


def generate_conditional_tractogram(
    out_path,
    *,
    model=None,
    request=None,
    n_streamlines=10000,
    latent="auto",
    bandwidth=0.025,
    condition_bandwidth=0.1,
    extrapolate=False,
    filters=None,
    chunk_size=10000,
    budget=20.0,
    seed=0,
    reference=None,
    positions_dtype="float32",
    force=False,
    progress=False,
    **filter_options,
):
    """Generate a tractogram for requested conditions and write it in chunks.

    :func:`~dipy_tractogen.generation.pipeline.generate_tractogram` with
    ``source=ConditionalSource(request, latent=..., bandwidth=...,
    condition_bandwidth=..., extrapolate=...)``.

    Parameters
    ----------
    out_path : str or path-like
        Output tractogram (``.trx``, ``.trk`` or ``.tck``); a JSON sidecar
        with the provenance is written beside it.
    model : keras.Model, str, path-like or None, optional
        A trained model, its ``.keras`` file or a shipped name.
    request : dict of str to value or list, optional
        Requested values per condition (any subset the model was trained
        on; lists make a sweep).
    n_streamlines : int, optional
        Total count, shared equally by the combinations of the request.
    latent : {"auto", "prior", "kde"}, optional
        Latent source (see
        :class:`~dipy_tractogen.generation.sources.ConditionalSampler`).
    bandwidth : float, optional
        KDE bandwidth for ``latent="kde"``.
    condition_bandwidth : float, optional
        Kernel width over the continuous conditions (fraction of their
        training range) weighing the seeds.
    extrapolate : bool, optional
        Allow continuous values outside the training range.
    filters : FilterSettings, optional
    **filter_options
        Filter settings (``min_length``, ``max_length``, ``wm_mask``,
        ``min_wm_fraction``, ``max_curvature``, ``apply_filters``), as for
        :func:`~dipy_tractogen.generation.pipeline.generate_tractogram`; the
        latent filter does not apply.
    chunk_size, budget, seed, reference, positions_dtype, force, progress
        As for :func:`~dipy_tractogen.generation.pipeline.generate_tractogram`.

    Returns
    -------
    report : GenerationReport
        Counts per combination (``"bundle=arch, age=72"``), rejections per
        filter, stop reason.

    Raises
    ------
    ConditionError
        Unknown label, out-of-range value (without ``extrapolate``), a
        condition the model was not trained on.
    InputError, ModelError, OutputExistsError
        On other bad input; nothing is written then.
    """

    source = ConditionalSource(
        request,
        latent=latent,
        bandwidth=bandwidth,
        condition_bandwidth=condition_bandwidth,
        extrapolate=extrapolate,
    )
    return generate_tractogram(
        out_path,
        model=model,
        source=source,
        n_streamlines=n_streamlines,
        filters=filters,
        chunk_size=chunk_size,
        budget=budget,
        seed=seed,
        reference=reference,
        positions_dtype=positions_dtype,
        force=force,
        progress=progress,
        **filter_options,
    )
