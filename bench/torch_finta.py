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

import numpy as np
import torch
from torch import nn

__all__ = ["TorchFinta", "keras_weights_from_torch", "copy_torch_to_keras"]

ENCODER_FILTERS = (32, 64, 128, 256, 512)
BOTTLENECK_FILTERS = 1024
DECODER_FILTERS = (512, 256, 128, 64, 32)


def _conv(c_in, c_out, stride):
    return [nn.ReflectionPad1d(1), nn.Conv1d(c_in, c_out, kernel_size=3, stride=stride)]


class TorchFinta(nn.Module):
    """FINTA autoencoder in PyTorch (4,726,307 parameters for the defaults).

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
        layers, c_in = [], 3
        for c_out in ENCODER_FILTERS:
            layers += [*_conv(c_in, c_out, 2), nn.ReLU()]
            c_in = c_out
        layers += _conv(c_in, BOTTLENECK_FILTERS, 1)
        self.encoder_conv = nn.Sequential(*layers)
        self.fc1 = nn.Linear(BOTTLENECK_FILTERS * self.length, latent_dim)
        self.fc2 = nn.Linear(latent_dim, BOTTLENECK_FILTERS * self.length)
        layers, c_in = [], BOTTLENECK_FILTERS
        for c_out in DECODER_FILTERS:
            layers += [
                *_conv(c_in, c_out, 1),
                nn.ReLU(),
                nn.Upsample(scale_factor=2, mode="linear", align_corners=False),
            ]
            c_in = c_out
        layers += _conv(c_in, 3, 1)
        self.decoder_conv = nn.Sequential(*layers)

    def encode(self, x):
        """(N, n_points, 3) channels-last -> (N, latent_dim)."""
        h = self.encoder_conv(x.permute(0, 2, 1))
        return self.fc1(torch.flatten(h, 1))  # channels-first flatten: c * L + l

    def decode(self, z):
        """(N, latent_dim) -> (N, n_points, 3) channels-last."""
        h = self.fc2(z).view(-1, BOTTLENECK_FILTERS, self.length)
        return self.decoder_conv(h).permute(0, 2, 1)

    def forward(self, x):
        return self.decode(self.encode(x))

    def convs(self):
        """The encoder then decoder convolutions, in layer order (e1..e6, d1..d6)."""
        enc = [m for m in self.encoder_conv if isinstance(m, nn.Conv1d)]
        dec = [m for m in self.decoder_conv if isinstance(m, nn.Conv1d)]
        return enc, dec


def keras_weights_from_torch(model):
    """Map TorchFinta parameters to Keras layer weights.

    Parameters
    ----------
    model : TorchFinta

    Returns
    -------
    weights : dict
        Keras layer name (``e1``..``e6``, ``fc1``, ``fc2``, ``d1``..``d6``) ->
        ``[kernel, bias]`` NumPy arrays in Keras layout.
    """
    out = {}
    enc, dec = model.convs()
    length = model.length
    for prefix, convs in (("e", enc), ("d", dec)):
        for i, conv in enumerate(convs, start=1):
            w = conv.weight.detach().cpu().numpy()  # (out, in, k)
            out[f"{prefix}{i}"] = [w.transpose(2, 1, 0), conv.bias.detach().numpy()]
    w1 = model.fc1.weight.detach().numpy()  # (latent, C * L), index c * L + l
    latent = w1.shape[0]
    k1 = w1.reshape(latent, BOTTLENECK_FILTERS, length).transpose(2, 1, 0)
    out["fc1"] = [k1.reshape(-1, latent), model.fc1.bias.detach().numpy()]
    w2 = model.fc2.weight.detach().numpy()  # (C * L, latent)
    k2 = w2.reshape(BOTTLENECK_FILTERS, length, latent).transpose(2, 1, 0)
    b2 = model.fc2.bias.detach().numpy().reshape(BOTTLENECK_FILTERS, length).T
    out["fc2"] = [k2.reshape(latent, -1), b2.reshape(-1)]
    return out


def copy_torch_to_keras(torch_model, keras_model):
    """Set a Keras ``FintaAutoencoder``'s weights from a :class:`TorchFinta`.

    Parameters
    ----------
    torch_model : TorchFinta
    keras_model : dipy_tractogen.nn.finta.FintaAutoencoder
    """
    weights = keras_weights_from_torch(torch_model)
    for net in (keras_model.encoder, keras_model.decoder):
        for layer in net.layers:
            if layer.name in weights:
                layer.set_weights([np.asarray(w) for w in weights[layer.name]])
