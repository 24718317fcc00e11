"""A plain PyTorch FINTA autoencoder, written from the published specification.

Used only by the benchmarks and tests (speed comparison, and a check that the
Keras model computes the same function for the same weights). It follows the
layer table of ``shared/docs/finta-gesta-spec.md``: reflection padding of 1
before every kernel-3 convolution, stride-2 encoder, linear (not nearest)
x2 upsampling with ``align_corners=False`` in the decoder. The PyTorch side is
channels-first; :meth:`TorchFinta.forward` takes channels-last input
``(N, n_points, 3)`` like the Keras model.

References
----------
.. [1] Legarreta JH, et al. Filtering in tractography using autoencoders
   (FINTA). Medical Image Analysis 72, 102126, 2021.
   doi:10.1016/j.media.2021.102126
"""

import torch
from torch import nn

__all__ = ["TorchFinta", "keras_weights_from_torch", "copy_torch_to_keras"]

ENCODER_FILTERS = (32, 64, 128, 256, 512)
BOTTLENECK_FILTERS = 1024
DECODER_FILTERS = (512, 256, 128, 64, 32)


def _conv(c_in, c_out, stride):
    """Reflection padding then convolution: parameters ``<name>.1.weight/bias``."""
    return nn.Sequential(
        nn.ReflectionPad1d(1), nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride)
    )


class TorchFinta(nn.Module):
    """FINTA autoencoder in PyTorch (4,726,307 parameters for the defaults).

    Its modules are named like the published checkpoint
    (``encod_conv1..6``, ``fc1``, ``fc2``, ``decod_conv1..6``, each
    convolution in a ``Sequential`` after its padding), so ``state_dict()``
    has exactly the published keys and shapes.

    Parameters
    ----------
    latent_dim : int, optional
        Latent size.
    n_points : int, optional
        Points per streamline (a multiple of 32).
    """

    def __init__(self, latent_dim=32, n_points=256):
        super().__init__()
        self.length = n_points // 2 ** len(ENCODER_FILTERS)
        enc = (3, *ENCODER_FILTERS, BOTTLENECK_FILTERS)
        for i, (c_in, c_out) in enumerate(zip(enc[:-1], enc[1:], strict=True), start=1):
            setattr(self, f"encod_conv{i}", _conv(c_in, c_out, 2 if i < 6 else 1))
        self.fc1 = nn.Linear(BOTTLENECK_FILTERS * self.length, latent_dim)
        self.fc2 = nn.Linear(latent_dim, BOTTLENECK_FILTERS * self.length)
        dec = (BOTTLENECK_FILTERS, *DECODER_FILTERS, 3)
        for i, (c_in, c_out) in enumerate(zip(dec[:-1], dec[1:], strict=True), start=1):
            setattr(self, f"decod_conv{i}", _conv(c_in, c_out, 1))
        self.upsample = nn.Upsample(scale_factor=2, mode="linear", align_corners=False)

    def encode(self, x):
        """(N, n_points, 3) channels-last -> (N, latent_dim)."""
        h = x.permute(0, 2, 1)
        for i in range(1, 6):
            h = torch.relu(getattr(self, f"encod_conv{i}")(h))
        h = self.encod_conv6(h)
        return self.fc1(torch.flatten(h, 1))  # channels-first flatten: c * L + l

    def decode(self, z):
        """(N, latent_dim) -> (N, n_points, 3) channels-last."""
        h = self.fc2(z).view(-1, BOTTLENECK_FILTERS, self.length)
        for i in range(1, 6):
            h = self.upsample(torch.relu(getattr(self, f"decod_conv{i}")(h)))
        return self.decod_conv6(h).permute(0, 2, 1)

    def forward(self, x):
        return self.decode(self.encode(x))

    def convs(self):
        """The encoder then decoder convolutions, in layer order (e1..e6, d1..d6)."""
        enc = [getattr(self, f"encod_conv{i}")[1] for i in range(1, 7)]
        dec = [getattr(self, f"decod_conv{i}")[1] for i in range(1, 7)]
        return enc, dec


def keras_weights_from_torch(model):
    """Map TorchFinta parameters to Keras layer weights.

    Uses the package's published-checkpoint mapping
    (:func:`dipy_tractogen.models.convert.keras_weights_from_state_dict`).

    Parameters
    ----------
    model : TorchFinta

    Returns
    -------
    weights : dict
        Keras layer name (``e1``..``e6``, ``fc1``, ``fc2``, ``d1``..``d6``) ->
        ``[kernel, bias]`` NumPy arrays in Keras layout.
    """
    from dipy_tractogen.models.convert import keras_weights_from_state_dict

    return keras_weights_from_state_dict(
        model.state_dict(),
        latent_dim=model.fc1.out_features,
        n_points=model.length * 2 ** len(ENCODER_FILTERS),
    )


def copy_torch_to_keras(torch_model, keras_model):
    """Set a Keras ``FintaAutoencoder``'s weights from a :class:`TorchFinta`.

    Parameters
    ----------
    torch_model : TorchFinta
    keras_model : dipy_tractogen.models.finta.FintaAutoencoder
    """
    from dipy_tractogen.models.convert import set_weights_from_state_dict

    set_weights_from_state_dict(keras_model, torch_model.state_dict())
