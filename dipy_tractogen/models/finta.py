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

from dipy_tractogen.errors import InputError
from dipy_tractogen.models.backend import keras, register_serializable, require_keras
from dipy_tractogen.models.base import StreamlineAutoencoder, replica_count, run_batched
from dipy_tractogen.models.layers import ConvBlock, UpBlock

__all__ = [
    "ENCODER_FILTERS",
    "BOTTLENECK_FILTERS",
    "DECODER_FILTERS",
    "bottleneck_length",
    "build_finta_encoder",
    "build_finta_decoder",
    "FintaAutoencoder",
    # defined in dipy_tractogen.models.base, importable from here too
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


@register_serializable(package="dipy_tractogen")
class FintaAutoencoder(StreamlineAutoencoder):
    """FINTA convolutional autoencoder for streamlines of ``n_points`` points.

    ``model(x)`` maps NORMALISED streamlines ``(N, n_points, 3)`` to their
    normalised reconstruction; :meth:`encode` and :meth:`decode` work in
    millimetres, in batches, outside the training graph (the interface of
    :class:`~dipy_tractogen.models.base.StreamlineAutoencoder`).

    A deterministic autoencoder without a prior (``model_type="ae"``,
    ``has_prior=False``: :meth:`sample_latent` raises
    :class:`~dipy_tractogen.errors.ModelError`; generation samples around
    its seed bank). Its networks take no conditions: ``encode``, ``decode``
    and ``reconstruct`` accept a ``conditions`` argument like every model
    and ignore it, and :attr:`is_conditional` is False. A FINTA model
    trained alongside conditions records them in its card, which
    :attr:`condition_encoder` reads.

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
        Passed to :class:`~dipy_tractogen.models.base.StreamlineAutoencoder`
        (``card``) and :class:`keras.Model` (``name``...).

    Attributes
    ----------
    encoder : keras.Model
        Normalised streamlines ``(N, n_points, 3)`` -> latent ``(N, latent_dim)``.
    decoder : keras.Model
        Latent ``(N, latent_dim)`` -> normalised streamlines.

    Raises
    ------
    KerasUnavailableError
        If Keras 3 is not installed.
    InputError
        If ``latent_dim``, ``n_points``, ``center`` or ``scale`` is invalid.

    References
    ----------
    .. [1] Legarreta JH, et al. Filtering in tractography using autoencoders
       (FINTA). Med Image Anal 2021. doi:10.1016/j.media.2021.102126
    """

    model_type = "ae"
    has_prior = False
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
        super().__init__(
            latent_dim=latent_dim,
            n_points=n_points,
            center=center,
            scale=scale,
            **kwargs,
        )
        bottleneck_length(self.n_points)
        self.encoder = build_finta_encoder(
            latent_dim=self.latent_dim, n_points=self.n_points
        )
        self.decoder = build_finta_decoder(
            latent_dim=self.latent_dim, n_points=self.n_points
        )
        self.build((None, self.n_points, 3))

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
