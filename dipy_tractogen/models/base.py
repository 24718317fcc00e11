"""The interface every streamline autoencoder of dipy-tractogen answers.

:class:`StreamlineAutoencoder` is the base of
:class:`~dipy_tractogen.models.finta.FintaAutoencoder` (``model_type="ae"``)
and of the variational family of :mod:`dipy_tractogen.models.variational`
(``"vae"``, ``"cvae"``, ``"arvae"``, ``"aae"``). It owns what every one of
them has, so that training, generation, filtering and the commands use one
interface instead of probing model objects:

=====================  ======================================================
name                   what it is
=====================  ======================================================
``model_type``         class attribute: ``"ae"``, ``"vae"``, ``"cvae"``...
``has_prior``          class attribute: whether :meth:`sample_latent` works
``latent_dim``         size of the latent space (int)
``n_points``           points per streamline (int)
``center``             normalisation centre in mm, ndarray (3,)
``scale``              normalisation scale in mm (float)
``card``               the model card (dict, ``{}`` when unset)
``seed_bank``          generation data stored in the file (dict, ``{}``
                       when unset)
``condition_encoder``  the conditions the model knows (or None)
``n_conditions``       width of their encoded vector (0 without)
``is_conditional``     whether decoding needs a condition vector
``normalize``          mm -> network coordinates; ``denormalize`` back
``encode``             streamlines in mm (and conditions) -> latent codes
``decode``             latent codes (and conditions) -> streamlines in mm
``reconstruct``        ``decode(encode(...))``
``sample_latent``      draws from the prior (ModelError without one)
``with_precision``     a copy computing in another precision
=====================  ======================================================

``encode``, ``decode`` and ``reconstruct`` take ``conditions`` on every
model; a model whose networks do not take them (FINTA, the plain VAE)
ignores them, so callers can pass a streamline's conditions whatever the
model (:attr:`is_conditional` tells whether decoding *needs* them).

The base class also keeps what the ``.keras`` file format needs: the
configuration keys ``latent_dim``, ``n_points``, ``center``, ``scale`` and
``card`` (:meth:`get_config`), and the seed bank saved as
``seed_bank.npz`` in the archive's assets (:meth:`save_assets`,
:meth:`load_assets`). It builds no network: subclasses set ``encoder``
and ``decoder`` (Keras models on normalised coordinates) and implement
``call``.
"""

import json
import os
import zipfile

import numpy as np

from dipy_tractogen._checks import check_int
from dipy_tractogen._text import one_line
from dipy_tractogen.errors import ConditionError, InputError, ModelError
from dipy_tractogen.measures.resampling import resample_streamlines
from dipy_tractogen.models.backend import Model, require_keras
from dipy_tractogen.models.conditions import ConditionEncoder
from dipy_tractogen.models.precision import with_precision

__all__ = ["StreamlineAutoencoder", "run_batched", "replica_count"]


#: array kinds -> words, for seed bank messages
_KIND_WORDS = {
    "f": "floats",
    "iu": "integers",
    "fiu": "numbers",
    "US": "a string",
    "biu": "booleans or integers",
}


def _as_center(center):
    center = np.asarray(center, dtype=np.float64).reshape(-1)
    if center.shape != (3,) or not np.all(np.isfinite(center)):
        raise InputError(f"center must be 3 finite numbers, got {center.tolist()}")
    return center


def _as_scale(scale):
    scale = float(scale)
    if not np.isfinite(scale) or scale <= 0:
        raise InputError(f"scale must be a finite number > 0, got {scale}")
    return scale


class StreamlineAutoencoder(Model):
    """Base of the streamline autoencoders: normalisation, card, seed bank,
    inference in millimetres.

    Not used on its own: a subclass builds ``encoder`` and ``decoder`` after
    calling this constructor, and implements ``call``.

    Parameters
    ----------
    latent_dim : int, optional
        Size of the latent space.
    n_points : int, optional
        Points per streamline.
    center : sequence of 3 float, optional
        Normalisation centre in mm: ``x_norm = (x_mm - center) / scale``.
    scale : float, optional
        Normalisation scale in mm (> 0).
    card : dict or None, optional
        The model card (a JSON-serialisable dict); kept in :attr:`card` and
        in the model's configuration, so a ``.keras`` file describes itself.
    **kwargs
        Passed to :class:`keras.Model` (``name``...).

    Attributes
    ----------
    model_type : str
        Short name of the model family (class attribute).
    has_prior : bool
        Whether :meth:`sample_latent` draws from a prior (class attribute).
    architecture_summary : str or None
        One line written into model cards (class attribute).
    encoder, decoder : keras.Model
        Set by the subclass: normalised streamlines -> latent codes, and
        back.

    Raises
    ------
    KerasUnavailableError
        If Keras 3 is not installed.
    InputError
        If ``latent_dim``, ``n_points``, ``center`` or ``scale`` is invalid.
    """

    #: short name of the model family (``build_model``'s model_type)
    model_type = None
    #: whether the model has a prior to draw latent codes from
    has_prior = False
    #: one-line description written into model cards
    architecture_summary = None

    def __init__(
        self,
        *,
        latent_dim=32,
        n_points=256,
        center=(0.0, 0.0, 0.0),
        scale=1.0,
        card=None,
        **kwargs,
    ):
        require_keras()
        super().__init__(**kwargs)
        n_points = check_int(n_points, "n_points")
        self._latent_dim = check_int(latent_dim, "latent_dim")
        self._n_points = n_points
        self._center = _as_center(center)
        self._scale = _as_scale(scale)
        # conditions the networks are built with (subclasses set their own)
        object.__setattr__(self, "_condition_encoder", None)
        self.card = card
        self.seed_bank = None

    # --- what the model is ------------------------------------------------------

    @property
    def latent_dim(self):
        """Size of the latent space (int)."""
        return self._latent_dim

    @property
    def n_points(self):
        """Points per streamline (int)."""
        return self._n_points

    @property
    def center(self):
        """Normalisation centre in mm, ndarray (3,) (a copy)."""
        return self._center.copy()

    @property
    def scale(self):
        """Normalisation scale in mm (float)."""
        return self._scale

    @property
    def card(self):
        """The model card: a JSON-serialisable dict (``{}`` when unset)."""
        return self._card_dict

    @card.setter
    def card(self, value):
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise InputError(f"a model card must be a dict, got {type(value).__name__}")
        # plain values, outside Keras' attribute tracking
        object.__setattr__(self, "_card_dict", json.loads(json.dumps(value)))
        object.__setattr__(self, "_card_conditions", None)

    @property
    def seed_bank(self):
        """Generation data stored in the model file: a dict of numpy arrays.

        Empty until the trainer fills it
        (:func:`dipy_tractogen.models.seed_bank.attach_seed_bank`):
        ``latents`` (latent codes of the training streamlines, both
        orientations), ``labels`` (their bundle ids), for a model trained
        with conditions ``conditions`` (their encoded conditions), the
        reference space (``affine``, ``dimensions``, ``voxel_sizes``,
        ``voxel_order``) and optionally a white-matter ``wm_mask``. Saved as
        ``seed_bank.npz`` in the ``.keras`` archive's assets (no pickle).
        Setting None empties it.
        """
        return self._seed_bank_dict

    @seed_bank.setter
    def seed_bank(self, value):
        value = {} if value is None else dict(value)
        bank = {k: np.asarray(v) for k, v in value.items()}
        for key, arr in bank.items():
            if arr.dtype == object:
                raise InputError(f"seed_bank[{key!r}] must be a plain numeric array")
        object.__setattr__(self, "_seed_bank_dict", bank)

    @property
    def condition_encoder(self):
        """The conditions the model knows: a
        :class:`~dipy_tractogen.models.conditions.ConditionEncoder`, or None.

        Those its networks were built with, or else those its card records
        (a FINTA model trained alongside conditions records them, so that
        its seeds can be selected by condition).
        """
        if self._condition_encoder is not None:
            return self._condition_encoder
        return self._card_condition_encoder()

    def _card_condition_encoder(self):
        config = self.card.get("conditions")
        if not config:
            return None
        if self._card_conditions is None:
            enc = ConditionEncoder.from_config(config)
            object.__setattr__(self, "_card_conditions", enc)
        return self._card_conditions

    @property
    def n_conditions(self):
        """Width of the encoded condition vector (0 without conditions)."""
        enc = self.condition_encoder
        return 0 if enc is None else int(enc.n_features_)

    @property
    def is_conditional(self):
        """Whether decoding needs a condition vector."""
        return bool(self._decoder_columns())

    def _encoder_columns(self):
        """Columns of the condition vector the encoder takes (none here)."""
        return []

    def _decoder_columns(self):
        """Columns of the condition vector the decoder takes (none here)."""
        return []

    # --- normalisation ----------------------------------------------------------

    def normalize(self, x_mm):
        """Map millimetre coordinates to the network's input space.

        Parameters
        ----------
        x_mm : array_like (..., 3)
            Points in mm.

        Returns
        -------
        x_norm : ndarray (..., 3) float32
            ``(x_mm - center) / scale``.
        """
        x = np.asarray(x_mm, dtype=np.float64)
        return ((x - self._center) / self._scale).astype(np.float32)

    def denormalize(self, x_norm):
        """Map network coordinates back to millimetres.

        Parameters
        ----------
        x_norm : array_like (..., 3)
            Normalised points.

        Returns
        -------
        x_mm : ndarray (..., 3) float32
            ``x_norm * scale + center``.
        """
        x = np.asarray(x_norm, dtype=np.float64)
        return (x * self._scale + self._center).astype(np.float32)

    # --- Keras plumbing ---------------------------------------------------------

    def get_config(self):
        config = super().get_config()
        config.update(
            latent_dim=self.latent_dim,
            n_points=self.n_points,
            center=[float(c) for c in self._center],
            scale=self._scale,
            card=self.card,
        )
        return config

    def save_assets(self, dir_path):
        if self.seed_bank:
            np.savez_compressed(
                os.path.join(dir_path, "seed_bank.npz"), **self.seed_bank
            )

    def load_assets(self, dir_path):
        path = os.path.join(dir_path, "seed_bank.npz")
        if os.path.isfile(path):
            if not zipfile.is_zipfile(path):  # np.load would try it as a pickle
                raise ModelError("assets/seed_bank.npz is not an .npz archive")
            try:
                with np.load(path, allow_pickle=False) as data:
                    bank = {k: data[k] for k in data.files}
            except Exception as exc:  # zip, npy and pickle refusals
                raise ModelError(
                    f"assets/seed_bank.npz is unreadable: {one_line(exc)}"
                ) from None
            problem = self._seed_bank_problem(bank)
            if problem:
                raise ModelError(f"assets/seed_bank.npz: {problem}")
            self.seed_bank = bank

    def _seed_bank_problem(self, bank):
        """What is wrong with a seed bank read from a file (None: nothing).

        Each array present must have the shape and kind generation reads
        (a bank may hold only some of them).
        """
        n = len(bank["latents"]) if getattr(bank.get("latents"), "ndim", 0) else None
        checks = {
            "latents": ("f", (None, self.latent_dim)),
            "labels": ("iu", (n,)),
            "conditions": ("f", (n, self.n_conditions or None)),
            "affine": ("fiu", (4, 4)),
            "dimensions": ("iu", (3,)),
            "voxel_sizes": ("fiu", (3,)),
            "voxel_order": ("US", ()),
        }
        if "dimensions" in bank and bank["dimensions"].shape == (3,):
            dims = tuple(int(d) for d in bank["dimensions"])
        else:
            dims = (None, None, None)
        checks["wm_mask"] = ("biu", dims)
        for key, (kinds, shape) in checks.items():
            if key not in bank:
                continue
            arr = bank[key]
            expected = "(" + ", ".join("n" if d is None else str(d) for d in shape)
            expected += ",)" if len(shape) == 1 else ")"
            if arr.ndim != len(shape) or any(
                d is not None and d != a for d, a in zip(shape, arr.shape, strict=False)
            ):
                return f"{key!r} has shape {arr.shape}, expected {expected}"
            if arr.dtype.kind not in kinds:
                return f"{key!r} has dtype {arr.dtype}, expected {_KIND_WORDS[kinds]}"
        for key, arr in bank.items():
            if arr.dtype.kind not in "biuf" and key not in checks:
                return f"{key!r} has dtype {arr.dtype}, expected numbers"
        if "labels" in bank and len(bank["labels"]) and bank["labels"].min() < 0:
            return "'labels' has negative bundle ids"
        return None

    # --- batched inference in millimetres ---------------------------------------

    def _streamline_array(self, streamlines):
        if isinstance(streamlines, np.ndarray) and streamlines.ndim != 3:
            raise InputError(
                f"streamlines must be an array (N, P, 3) or a list of (P, 3) "
                f"arrays, got an array of shape {streamlines.shape}"
            )
        array = resample_streamlines(streamlines, n_points=self.n_points)
        if array.ndim != 3 or array.shape[1:] != (self.n_points, 3):
            raise InputError(
                f"streamlines must have 3 coordinates per point, got {array.shape}"
            )
        return array

    def _condition_array(self, conditions, n, columns):
        """The columns a network takes of ``n`` condition rows (None if none)."""
        if not columns:
            return None
        if conditions is None:
            raise ConditionError(
                f"this {self.model_type} model needs conditions "
                f"({self.condition_encoder.describe()})"
            )
        if isinstance(conditions, dict):
            conditions = self.condition_encoder.transform(conditions)
        c = np.asarray(conditions, dtype=np.float32)
        if c.ndim == 1:
            c = np.broadcast_to(c, (n, c.shape[0]))
        if c.shape != (n, self.n_conditions):
            raise ConditionError(
                f"conditions must have shape ({n}, {self.n_conditions}), got {c.shape}"
            )
        return np.ascontiguousarray(c[:, columns])

    def encode(self, streamlines, conditions=None, *, batch_size=4096):
        """Encode streamlines given in mm to latent codes.

        Parameters
        ----------
        streamlines : list of ndarray (P, 3), ArraySequence or ndarray
            Streamlines in mm. Those with a point count other than
            ``n_points`` are resampled by arc length.
        conditions : ndarray (N, n_conditions) or (n_conditions,) or dict, optional
            Encoded conditions of each streamline (one row is broadcast), or
            raw values per condition name; needed when the encoder takes
            conditions, ignored by a model whose encoder does not.
        batch_size : int, optional
            Streamlines per forward pass (bounds memory, not the result).

        Returns
        -------
        z : ndarray (N, latent_dim) float32
            The latent codes (a variational model's posterior mean).

        Raises
        ------
        InputError
            On streamlines that are not 3-D point sequences.
        ConditionError
            If the encoder needs conditions and they are missing or of the
            wrong shape.
        """
        x = self.normalize(self._streamline_array(streamlines))
        c = self._condition_array(conditions, len(x), self._encoder_columns())
        inputs = [x] if c is None else [x, c]
        return run_batched(self.encoder, inputs, (self.latent_dim,), batch_size)

    def decode(self, z, conditions=None, *, batch_size=4096):
        """Decode latent codes (with their conditions) to streamlines in mm.

        Parameters
        ----------
        z : array_like (N, latent_dim)
            Latent codes.
        conditions : ndarray (N, n_conditions) or (n_conditions,) or dict, optional
            Encoded conditions of each row (one row is broadcast); needed
            when :attr:`is_conditional`, ignored otherwise.
        batch_size : int, optional
            Codes per forward pass.

        Returns
        -------
        streamlines : ndarray (N, n_points, 3) float32
            Decoded streamlines in mm.

        Raises
        ------
        InputError
            If ``z`` is not of shape ``(N, latent_dim)``.
        ConditionError
            If the decoder needs conditions and they are missing or of the
            wrong shape.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(
                f"latent vectors must have shape (N, {self.latent_dim}), got {z.shape}"
            )
        c = self._condition_array(conditions, len(z), self._decoder_columns())
        inputs = [z] if c is None else [z, c]
        x = run_batched(self.decoder, inputs, (self.n_points, 3), batch_size)
        return self.denormalize(x)

    def reconstruct(self, streamlines, conditions=None, *, batch_size=4096):
        """Encode then decode streamlines (mm in, mm out).

        Parameters
        ----------
        streamlines : list of ndarray (P, 3), ArraySequence or ndarray
            Streamlines in mm.
        conditions : ndarray or dict, optional
            As for :meth:`encode` and :meth:`decode`.
        batch_size : int, optional
            Streamlines per forward pass.

        Returns
        -------
        streamlines : ndarray (N, n_points, 3) float32
        """
        z = self.encode(streamlines, conditions, batch_size=batch_size)
        return self.decode(z, conditions, batch_size=batch_size)

    def sample_latent(self, conditions=None, n=None, *, random_state=None):
        """Draw latent codes from the model's prior, one per condition row.

        Only models with a prior (:attr:`has_prior`) implement it.

        Parameters
        ----------
        conditions : ndarray (N, n_conditions) or None
            Encoded conditions of the draws.
        n : int, optional
            Number of draws when ``conditions`` is None.
        random_state : None, int or numpy.random.Generator

        Returns
        -------
        z : ndarray (N, latent_dim) float32

        Raises
        ------
        ModelError
            Here: the model has no prior.
        """
        raise ModelError(
            f"a {type(self).__name__} ({self.model_type}) has no prior to sample "
            "latent codes from: sample around its seed bank (KDE) instead"
        )

    def with_precision(self, precision="mixed_bfloat16", **kwargs):
        """A copy computing in ``precision`` with the same float32 weights.

        See :func:`dipy_tractogen.models.precision.with_precision`.

        Parameters
        ----------
        precision : {"float32", "mixed_bfloat16", "mixed_float16"}, optional
            Compute precision of the copy.
        **kwargs
            ``float32_layers``, ``jit_compile``.

        Returns
        -------
        model : StreamlineAutoencoder
            Of the same class.
        """
        return with_precision(self, precision, **kwargs)


def replica_count(model):
    """Replicas a ``tf.distribute`` strategy runs ``model`` on (1 otherwise).

    Read from the model's ``distribute_strategy`` (TensorFlow backend: the
    strategy whose scope built it); other backends have none.

    Parameters
    ----------
    model : keras.Model

    Returns
    -------
    replicas : int
    """
    strategy = getattr(model, "distribute_strategy", None)
    return 1 if strategy is None else int(strategy.num_replicas_in_sync)


def run_batched(net, inputs, out_shape, batch_size):
    """Run ``net`` on ``inputs`` in batches with its compiled predict function.

    Parameters
    ----------
    net : keras.Model
        A built network (an encoder or a decoder); a network with several
        outputs contributes its first.
    inputs : ndarray or list of ndarray
        One input array, or aligned arrays for a network with several inputs
        (latent codes and conditions).
    out_shape : tuple of int
        Shape of one output row.
    batch_size : int
        Rows per forward pass (bounds memory, not the result).

    Returns
    -------
    out : ndarray, shape (N,) + out_shape, float32

    Notes
    -----
    Under a ``tf.distribute`` strategy with several replicas this goes
    through ``predict``, which splits each batch over the replicas;
    ``predict_on_batch`` there gives every replica the whole batch and
    returns all their outputs.
    """
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise InputError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    batch_size = int(batch_size)
    arrays = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
    n = len(arrays[0])
    if replica_count(net) > 1:
        y = net.predict(
            arrays if len(arrays) > 1 else arrays[0], batch_size=batch_size, verbose=0
        )
        y = y[0] if isinstance(y, (list, tuple)) else y
        return np.asarray(y, dtype=np.float32).reshape(n, *out_shape)
    out = np.empty((n, *out_shape), dtype=np.float32)
    for start in range(0, n, batch_size):
        stop = min(start + batch_size, n)
        part = [a[start:stop] for a in arrays]
        y = net.predict_on_batch(part if len(part) > 1 else part[0])
        out[start:stop] = np.asarray(y[0] if isinstance(y, (list, tuple)) else y)
    return out
