"""Keras 3 layers for 1-D convolutional streamline autoencoders.

Written with ``keras.layers`` and ``keras.ops`` only, so they run on every
Keras backend (TensorFlow, PyTorch, JAX) and save to ``.keras`` files with
``safe_mode=True``. Tensors are channels-last: ``(batch, points, channels)``.

The padding and upsampling layers reproduce PyTorch's ``nn.ReflectionPad1d``
and ``nn.Upsample(mode="linear", align_corners=False)`` exactly, so that
networks specified in PyTorch terms (FINTA, GESTA) keep their published
behaviour.
"""

from dipy_tractogen._checks import check_int
from dipy_tractogen.models.backend import (
    Layer,
    keras,
    register_serializable,
    require_keras,
)

__all__ = [
    "ReflectionPadding1D",
    "LinearUpsampling1D",
    "ConvBlock",
    "UpBlock",
]

_PACKAGE = "dipy_tractogen"


@register_serializable(package=_PACKAGE)
class ReflectionPadding1D(Layer):
    """Pad the points axis by reflection about the end points.

    ``[x0, x1, ..., x_{n-1}]`` padded by 1 becomes
    ``[x1, x0, x1, ..., x_{n-1}, x_{n-2}]`` (NumPy ``mode="reflect"``, PyTorch
    ``nn.ReflectionPad1d``; the end points are not repeated).

    Parameters
    ----------
    padding : int, optional
        Points added at each end; must be smaller than the input length.
    **kwargs
        Passed to :class:`keras.layers.Layer` (``name``, ``dtype``...).
    """

    def __init__(self, padding=1, **kwargs):
        super().__init__(**kwargs)
        self.padding = check_int(padding, "padding", minimum=0)

    def build(self, input_shape):
        length = input_shape[1]
        if length is not None and self.padding >= length:
            raise ValueError(
                f"reflection padding {self.padding} needs more than "
                f"{self.padding} points, got {length}"
            )
        self.built = True

    def call(self, x):
        p = self.padding
        if p == 0:
            return x
        ops = keras.ops
        left = ops.flip(x[:, 1 : p + 1, :], axis=1)
        right = ops.flip(x[:, -p - 1 : -1, :], axis=1)
        return ops.concatenate([left, x, right], axis=1)

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        length = None if length is None else length + 2 * self.padding
        return (input_shape[0], length, *input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config["padding"] = self.padding
        return config


@register_serializable(package=_PACKAGE)
class LinearUpsampling1D(Layer):
    """Upsample the points axis by linear interpolation (PyTorch semantics).

    Exactly ``torch.nn.Upsample(scale_factor=factor, mode="linear",
    align_corners=False)``: output point ``i`` samples the input at
    ``(i + 0.5) / factor - 0.5`` (half-pixel centres), clamped to the first
    and last input points. For an integer factor every output phase
    ``j = i mod factor`` is a fixed two-tap stencil of neighbouring input
    points; with ``factor=2``::

        y[2k]     = 0.25 x[k-1] + 0.75 x[k]
        y[2k + 1] = 0.75 x[k]   + 0.25 x[k+1]

    with ``x[-1] = x[0]`` and ``x[n] = x[n-1]`` (edge replication), so the
    layer is a few fused multiply-adds and no gather.

    Parameters
    ----------
    factor : int, optional
        Integer upsampling factor (output length is ``factor`` times the
        input length).
    **kwargs
        Passed to :class:`keras.layers.Layer`.

    Notes
    -----
    Nearest-neighbour upsampling (``keras.layers.UpSampling1D``) changes the
    network's behaviour: it is not a substitute.
    """

    def __init__(self, factor=2, **kwargs):
        super().__init__(**kwargs)
        self.factor = check_int(factor, "factor")
        # (weight of the left/centre/right neighbour) for each output phase
        self._stencils = []
        for j in range(self.factor):
            offset = (j + 0.5) / self.factor - 0.5  # in (-0.5, 0.5)
            if offset < 0:
                self._stencils.append((-offset, 1.0 + offset, 0.0))
            else:
                self._stencils.append((0.0, 1.0 - offset, offset))

    def build(self, input_shape):
        self.built = True

    def call(self, x):
        if self.factor == 1:
            return x
        ops = keras.ops
        first, last = x[:, :1, :], x[:, -1:, :]
        left = ops.concatenate([first, x[:, :-1, :]], axis=1)  # x[k-1]
        right = ops.concatenate([x[:, 1:, :], last], axis=1)  # x[k+1]
        phases = []
        for w_left, w_centre, w_right in self._stencils:
            y = x if w_centre == 1.0 else w_centre * x
            if w_left:
                y = y + w_left * left
            if w_right:
                y = y + w_right * right
            phases.append(y)
        y = ops.stack(phases, axis=2)  # (batch, n, factor, channels)
        n = x.shape[1]
        length = (ops.shape(x)[1] if n is None else n) * self.factor
        return ops.reshape(y, (-1, length, x.shape[-1]))

    def compute_output_shape(self, input_shape):
        length = input_shape[1]
        length = None if length is None else length * self.factor
        return (input_shape[0], length, *input_shape[2:])

    def get_config(self):
        config = super().get_config()
        config["factor"] = self.factor
        return config


@register_serializable(package=_PACKAGE)
class ConvBlock(Layer):
    """Reflection padding, then a 1-D convolution with no padding, then ReLU.

    With ``kernel_size=3`` and ``padding=1`` the block keeps the number of
    points for ``strides=1`` and halves it for ``strides=2`` (even lengths),
    like PyTorch ``ReflectionPad1d(1)`` followed by ``Conv1d(k=3)``.

    Parameters
    ----------
    filters : int
        Output channels.
    kernel_size : int, optional
        Convolution width.
    strides : int, optional
        Convolution stride.
    activation : str or None, optional
        Keras activation applied after the convolution (``None``: linear).
    padding : int, optional
        Reflection padding at each end (``kernel_size // 2`` keeps lengths).
    **kwargs
        Passed to :class:`keras.layers.Layer`.
    """

    def __init__(
        self,
        filters,
        *,
        kernel_size=3,
        strides=1,
        activation="relu",
        padding=1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        require_keras()
        self.filters = check_int(filters, "filters")
        self.kernel_size = check_int(kernel_size, "kernel_size")
        self.strides = check_int(strides, "strides")
        self.activation = activation
        self.padding = check_int(padding, "padding", minimum=0)
        self.pad = ReflectionPadding1D(
            self.padding, name="pad", dtype=self.dtype_policy
        )
        self.conv = keras.layers.Conv1D(
            self.filters,
            self.kernel_size,
            strides=self.strides,
            padding="valid",
            data_format="channels_last",
            activation=activation,
            name="conv",
            dtype=self.dtype_policy,
        )

    def build(self, input_shape):
        self.pad.build(input_shape)
        self.conv.build(self.pad.compute_output_shape(input_shape))
        self.built = True

    def call(self, x):
        return self.conv(self.pad(x))

    def compute_output_shape(self, input_shape):
        return self.conv.compute_output_shape(
            self.pad.compute_output_shape(input_shape)
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            filters=self.filters,
            kernel_size=self.kernel_size,
            strides=self.strides,
            activation=self.activation,
            padding=self.padding,
        )
        return config


@register_serializable(package=_PACKAGE)
class UpBlock(ConvBlock):
    """A :class:`ConvBlock` (stride 1) followed by linear upsampling.

    Parameters
    ----------
    filters : int
        Output channels.
    factor : int, optional
        Upsampling factor (:class:`LinearUpsampling1D`).
    kernel_size : int, optional
        Convolution width.
    activation : str or None, optional
        Activation applied after the convolution, before upsampling.
    padding : int, optional
        Reflection padding at each end.
    **kwargs
        Passed to :class:`keras.layers.Layer`.
    """

    def __init__(
        self,
        filters,
        *,
        factor=2,
        kernel_size=3,
        activation="relu",
        padding=1,
        **kwargs,
    ):
        kwargs.pop("strides", None)
        super().__init__(
            filters,
            kernel_size=kernel_size,
            strides=1,
            activation=activation,
            padding=padding,
            **kwargs,
        )
        self.factor = check_int(factor, "factor")
        self.upsample = LinearUpsampling1D(
            self.factor, name="upsample", dtype=self.dtype_policy
        )

    def build(self, input_shape):
        super().build(input_shape)
        self.upsample.build(super().compute_output_shape(input_shape))

    def call(self, x):
        return self.upsample(super().call(x))

    def compute_output_shape(self, input_shape):
        return self.upsample.compute_output_shape(
            super().compute_output_shape(input_shape)
        )

    def get_config(self):
        config = super().get_config()
        config.pop("strides")
        config["factor"] = self.factor
        return config
