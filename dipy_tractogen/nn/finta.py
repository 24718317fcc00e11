"""The FINTA streamline autoencoder (Keras 3).

A 1-D convolutional autoencoder mapping a streamline resampled to 256 points
to a 32-dimensional latent vector and back (4,726,307 parameters), as
published for tractogram filtering (FINTA) and reused for generative sampling
(GESTA). Implemented from the published specification with ``keras.layers``
and ``keras.ops`` only (any Keras backend).

Layer table (channels-last, ``n_points=256``; every convolution has kernel 3
after a reflection padding of 1):

======  ====================================  ==============  ======  ========
layer   operation                             channels        stride  output
======  ====================================  ==============  ======  ========
e1-e5   reflect-pad + Conv1D + ReLU           3 -> ... 512    2       128..8
e6      reflect-pad + Conv1D (linear)         512 -> 1024     1       8 x 1024
fc1     flatten (8192) + Dense (latent z)     8192 -> 32              32
fc2     Dense + reshape                       32 -> 8192              8 x 1024
d1-d5   reflect-pad + Conv1D + ReLU + x2      1024 -> ... 32  1       16..256
        linear upsampling
d6      reflect-pad + Conv1D (linear)         32 -> 3         1       256 x 3
======  ====================================  ==============  ======  ========

Flatten order and PyTorch weights
---------------------------------
Keras keeps the bottleneck channels-last, shape ``(L, C) = (8, 1024)``, so
``fc1``'s input index is ``l * C + c`` and ``fc2``'s output index reshaped to
``(L, C)`` is ``l * C + c`` too. PyTorch keeps ``(C, L)`` and flattens to
``c * L + l``. To import PyTorch weights::

    fc1.kernel[l * C + c, :] = torch_fc1.weight[:, c * L + l].T
    fc2.kernel[:, l * C + c] = torch_fc2.weight[c * L + l, :]
    fc2.bias[l * C + c] = torch_fc2.bias[c * L + l]

i.e. ``fc1.kernel = W1.reshape(latent, C, L).transpose(2, 1, 0).reshape(-1,
latent)`` and ``fc2.kernel = W2.reshape(C, L, latent).transpose(2, 1,
0).reshape(latent, -1)``. Convolution kernels map as
``conv.kernel = torch_conv.weight.transpose(2, 1, 0)`` (``(k, in, out)``).

Normalisation (a deviation from the reference code)
----------------------------------------------------
The network sees normalised coordinates ``(x_mm - center) / scale``; the
model stores ``center`` and ``scale`` in its configuration (so in its
``.keras`` file) and :meth:`FintaAutoencoder.encode` / ``decode`` take and
return millimetres. The reference code trains on raw millimetres, which was
measured to train much worse on these machines.

References
----------
.. [1] Legarreta JH, Petit L, Rheault F, et al. Filtering in tractography
   using autoencoders (FINTA). Medical Image Analysis 72, 102126, 2021.
   doi:10.1016/j.media.2021.102126
.. [2] Legarreta JH, Petit L, Jodoin PM, Descoteaux M. Generative sampling in
   bundle tractography using autoencoders (GESTA). Medical Image Analysis 85,
   102761, 2023. doi:10.1016/j.media.2023.102761
"""

import json
import os

import numpy as np

from dipy_tractogen.errors import InputError
from dipy_tractogen.nn import Model, keras, register_serializable, require_keras
from dipy_tractogen.nn.layers import ConvBlock, UpBlock

__all__ = [
    "ENCODER_FILTERS",
    "BOTTLENECK_FILTERS",
    "DECODER_FILTERS",
    "bottleneck_length",
    "build_finta_encoder",
    "build_finta_decoder",
    "FintaAutoencoder",
    "run_batched",
    "replica_count",
]

#: channels of the stride-2 encoder blocks e1..e5
ENCODER_FILTERS = (32, 64, 128, 256, 512)
#: channels of e6 (stride 1) and of the decoder's first feature map
BOTTLENECK_FILTERS = 1024
#: channels of the upsampling decoder blocks d1..d5
DECODER_FILTERS = (512, 256, 128, 64, 32)


def bottleneck_length(n_points):
    """Number of points left after the five stride-2 encoder blocks.

    Parameters
    ----------
    n_points : int
        Points per streamline; a multiple of 32, at least 64.

    Returns
    -------
    length : int
        ``n_points // 32``.

    Raises
    ------
    InputError
        If ``n_points`` is not a multiple of 32 or is smaller than 64.
    """
    factor = 2 ** len(ENCODER_FILTERS)
    if (
        isinstance(n_points, bool)
        or int(n_points) != n_points
        or n_points % factor
        or n_points < 2 * factor
    ):
        raise InputError(
            f"n_points must be a multiple of {factor} and >= {2 * factor}, "
            f"got {n_points!r}"
        )
    return int(n_points) // factor


def build_finta_encoder(*, latent_dim=32, n_points=256, n_dims=3, name="encoder"):
    """Build the FINTA encoder: ``(N, n_points, n_dims) -> (N, latent_dim)``.

    Parameters
    ----------
    latent_dim : int, optional
        Size of the latent vector.
    n_points : int, optional
        Points per streamline (a multiple of 32, at least 64).
    n_dims : int, optional
        Channels per point (3 coordinates; more for per-point features).
    name : str, optional
        Name of the returned model.

    Returns
    -------
    encoder : keras.Model
        Functional model with layers ``e1``..``e6``, ``flatten``, ``fc1``.
    """
    require_keras()
    length = bottleneck_length(n_points)
    inputs = keras.Input((n_points, n_dims), name="streamlines")
    x = inputs
    for i, filters in enumerate(ENCODER_FILTERS, start=1):
        x = ConvBlock(filters, strides=2, activation="relu", name=f"e{i}")(x)
    x = ConvBlock(BOTTLENECK_FILTERS, strides=1, activation=None, name="e6")(x)
    x = keras.layers.Flatten(name="flatten")(x)  # channels-last: l * C + c
    assert x.shape[-1] == length * BOTTLENECK_FILTERS
    z = keras.layers.Dense(int(latent_dim), name="fc1")(x)
    return keras.Model(inputs, z, name=name)


def build_finta_decoder(*, latent_dim=32, n_points=256, n_dims=3, name="decoder"):
    """Build the FINTA decoder: ``(N, latent_dim) -> (N, n_points, n_dims)``.

    Parameters
    ----------
    latent_dim : int, optional
        Size of the latent vector (the input; a conditional variant passes
        the latent size plus its condition size).
    n_points : int, optional
        Points per output streamline (a multiple of 32, at least 64).
    n_dims : int, optional
        Channels per output point.
    name : str, optional
        Name of the returned model.

    Returns
    -------
    decoder : keras.Model
        Functional model with layers ``fc2``, ``reshape``, ``d1``..``d6``.
    """
    require_keras()
    length = bottleneck_length(n_points)
    inputs = keras.Input((int(latent_dim),), name="latent")
    x = keras.layers.Dense(length * BOTTLENECK_FILTERS, name="fc2")(inputs)
    x = keras.layers.Reshape((length, BOTTLENECK_FILTERS), name="reshape")(x)
    for i, filters in enumerate(DECODER_FILTERS, start=1):
        x = UpBlock(filters, factor=2, activation="relu", name=f"d{i}")(x)
    outputs = ConvBlock(n_dims, strides=1, activation=None, name="d6")(x)
    return keras.Model(inputs, outputs, name=name)


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


@register_serializable(package="dipy_tractogen")
class FintaAutoencoder(Model):
    """FINTA convolutional autoencoder for streamlines of ``n_points`` points.

    ``model(x)`` maps NORMALISED streamlines ``(N, n_points, 3)`` to their
    normalised reconstruction; :meth:`encode` and :meth:`decode` work in
    millimetres, in batches, outside the training graph.

    Parameters
    ----------
    latent_dim : int, optional
        Size of the latent space.
    n_points : int, optional
        Points per streamline (a multiple of 32, at least 64).
    center : sequence of 3 float, optional
        Normalisation centre in mm: ``x_norm = (x_mm - center) / scale``.
    scale : float, optional
        Normalisation scale in mm (> 0).
    **kwargs
        Passed to :class:`keras.Model` (``name``...). ``card`` (a
        JSON-serialisable dict, the model card) is accepted too; it is kept
        in :attr:`card` and in the model's configuration, so a ``.keras``
        file describes itself.

    Attributes
    ----------
    encoder : keras.Model
        Normalised streamlines ``(N, n_points, 3)`` -> latent ``(N, latent_dim)``.
    decoder : keras.Model
        Latent ``(N, latent_dim)`` -> normalised streamlines.
    card : dict
        The model card (empty until a trainer or :func:`load_model` fills it).

    Raises
    ------
    KerasUnavailableError
        If Keras 3 is not installed.
    InputError
        If ``n_points``, ``center`` or ``scale`` is invalid.

    References
    ----------
    .. [1] Legarreta JH, et al. Filtering in tractography using autoencoders
       (FINTA). Med Image Anal 2021. doi:10.1016/j.media.2021.102126
    """

    #: one-line description written into model cards
    architecture_summary = (
        "FINTA 1-D convolutional autoencoder: reflect-pad + Conv1D(k=3) encoder "
        "3->32->64->128->256->512 (stride 2, ReLU) ->1024 (stride 1), "
        "flatten + Dense latent; Dense + reshape, 5 x (Conv1D + ReLU + x2 "
        "linear upsampling) 1024->512->256->128->64->32, Conv1D 32->3"
    )

    def __init__(
        self,
        *,
        latent_dim=32,
        n_points=256,
        center=(0.0, 0.0, 0.0),
        scale=1.0,
        **kwargs,
    ):
        require_keras()
        card = kwargs.pop("card", None)
        super().__init__(**kwargs)
        bottleneck_length(n_points)
        if (
            isinstance(latent_dim, bool)
            or int(latent_dim) != latent_dim
            or latent_dim < 1
        ):
            raise InputError(f"latent_dim must be an integer >= 1, got {latent_dim!r}")
        self.latent_dim = int(latent_dim)
        self.n_points = int(n_points)
        self._center = _as_center(center)
        self._scale = _as_scale(scale)
        self.card = card
        self.seed_bank = None
        self.encoder = build_finta_encoder(
            latent_dim=self.latent_dim, n_points=self.n_points
        )
        self.decoder = build_finta_decoder(
            latent_dim=self.latent_dim, n_points=self.n_points
        )
        self.build((None, self.n_points, 3))

    # --- normalisation -------------------------------------------------------

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
        """The model card: a JSON-serialisable dict."""
        return self._card_dict

    @card.setter
    def card(self, value):
        value = {} if value is None else value
        if not isinstance(value, dict):
            raise InputError(f"a model card must be a dict, got {type(value).__name__}")
        # a plain dict, outside Keras' attribute tracking
        object.__setattr__(self, "_card_dict", json.loads(json.dumps(value)))

    @property
    def seed_bank(self):
        """Generation data stored in the model file: a dict of numpy arrays.

        Filled by the trainer (:func:`dipy_tractogen.models.attach_seed_bank`):
        ``latents`` (latent codes of the training streamlines, both
        orientations), ``labels`` (their bundle ids), the reference space
        (``affine``, ``dimensions``, ``voxel_sizes``, ``voxel_order``) and
        optionally a white-matter ``wm_mask``. Saved as ``seed_bank.npz`` in
        the ``.keras`` archive's assets (no pickle).
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

    def save_assets(self, dir_path):
        if self.seed_bank:
            np.savez_compressed(
                os.path.join(dir_path, "seed_bank.npz"), **self.seed_bank
            )

    def load_assets(self, dir_path):
        path = os.path.join(dir_path, "seed_bank.npz")
        if os.path.isfile(path):
            with np.load(path, allow_pickle=False) as data:
                self.seed_bank = {k: data[k] for k in data.files}

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

    # --- Keras plumbing --------------------------------------------------------

    def build(self, input_shape):
        if tuple(input_shape[1:]) != (self.n_points, 3):
            raise InputError(
                f"FintaAutoencoder expects input (N, {self.n_points}, 3), "
                f"got {tuple(input_shape)}"
            )
        self.built = True

    def call(self, x, training=False):
        return self.decoder(self.encoder(x, training=training), training=training)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape)

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

    # --- batched inference in millimetres ------------------------------------

    def _streamline_array(self, streamlines):
        if isinstance(streamlines, np.ndarray) and streamlines.ndim != 3:
            raise InputError(
                f"streamlines must be an array (N, P, 3) or a list of (P, 3) "
                f"arrays, got an array of shape {streamlines.shape}"
            )
        try:
            from dipy_tractogen.io import resample_streamlines
        except ImportError:  # pragma: no cover - the io module is optional here
            resample_streamlines = _resample_with_dipy
        array = resample_streamlines(streamlines, n_points=self.n_points)
        if array.ndim != 3 or array.shape[1:] != (self.n_points, 3):
            raise InputError(
                f"streamlines must have 3 coordinates per point, got {array.shape}"
            )
        return array

    def encode(self, streamlines, *, batch_size=4096):
        """Encode streamlines given in mm to latent vectors.

        Parameters
        ----------
        streamlines : list of ndarray (P, 3), ArraySequence or ndarray
            Streamlines in mm. Those with a point count other than
            ``n_points`` are resampled by arc length.
        batch_size : int, optional
            Streamlines per forward pass (bounds memory, not the result).

        Returns
        -------
        z : ndarray (N, latent_dim) float32
        """
        x = self.normalize(self._streamline_array(streamlines))
        return run_batched(self.encoder, x, (self.latent_dim,), batch_size)

    def decode(self, z, *, batch_size=4096):
        """Decode latent vectors to streamlines in mm.

        Parameters
        ----------
        z : array_like (N, latent_dim)
            Latent vectors.
        batch_size : int, optional
            Vectors per forward pass.

        Returns
        -------
        streamlines : ndarray (N, n_points, 3) float32
            Decoded streamlines in mm.
        """
        z = np.asarray(z, dtype=np.float32)
        if z.ndim != 2 or z.shape[1] != self.latent_dim:
            raise InputError(
                f"latent vectors must have shape (N, {self.latent_dim}), got {z.shape}"
            )
        x = run_batched(self.decoder, z, (self.n_points, 3), batch_size)
        return self.denormalize(x)

    def with_precision(self, precision="mixed_bfloat16", **kwargs):
        """A copy computing in ``precision`` with the same float32 weights.

        See :func:`dipy_tractogen.nn.precision.with_precision`.

        Parameters
        ----------
        precision : {"float32", "mixed_bfloat16", "mixed_float16"}, optional
            Compute precision of the copy.
        **kwargs
            ``float32_layers``, ``jit_compile``.

        Returns
        -------
        model : FintaAutoencoder
        """
        from dipy_tractogen.nn.precision import with_precision

        return with_precision(self, precision, **kwargs)

    def reconstruct(self, streamlines, *, batch_size=4096):
        """Encode then decode streamlines (mm in, mm out).

        Parameters
        ----------
        streamlines : list of ndarray (P, 3), ArraySequence or ndarray
            Streamlines in mm.
        batch_size : int, optional
            Streamlines per forward pass.

        Returns
        -------
        streamlines : ndarray (N, n_points, 3) float32
        """
        z = self.encode(streamlines, batch_size=batch_size)
        return self.decode(z, batch_size=batch_size)


def _resample_with_dipy(streamlines, n_points=256):
    from dipy.tracking.streamline import set_number_of_points

    if isinstance(streamlines, np.ndarray) and streamlines.shape[1] == n_points:
        return np.asarray(streamlines, dtype=np.float32)
    if len(streamlines) == 0:
        return np.zeros((0, n_points, 3), dtype=np.float32)
    resampled = set_number_of_points(list(streamlines), nb_points=n_points)
    return np.asarray(np.stack(resampled), dtype=np.float32)


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
