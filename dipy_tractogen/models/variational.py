"""Variational, conditional and adversarial streamline autoencoders (Keras 3).

Four models on the FINTA backbone (the convolutional stacks of
:func:`~dipy_tractogen.models.finta.build_finta_encoder` and
:func:`~dipy_tractogen.models.finta.build_finta_decoder`, not copied), with the
interface of every autoencoder,
:class:`~dipy_tractogen.models.base.StreamlineAutoencoder` (``encode``,
``decode``, ``reconstruct`` in mm, ``normalize``, ``card``, ``seed_bank``,
``sample_latent``...), so model files, cards and generation work the same
way. All four have a prior (``has_prior``):

``vae`` (:class:`VariationalAutoencoder`)
    beta-VAE [1]_: the flattened encoder features (optionally batch
    normalised) feed two Dense heads, the mean ``mu`` and the log-variance
    (clamped to ``log_var_range``, by default [-10, 10], so that
    ``exp(log_var)`` never overflows); ``z = mu + exp(log_var / 2) eps``
    (:class:`GaussianSampling`, ``keras.random`` with a ``SeedGenerator``).
    The loss adds ``beta * KL(q(z|x) || N(0, I))``, summed over the batch,
    through ``add_loss``.
``cvae`` (:class:`ConditionalVAE`)
    The encoded conditions (one-hot bundle and status, scaled age and length;
    see :mod:`dipy_tractogen.models.conditions`) are concatenated to the encoder's
    flattened features and, through :class:`ConditionEmbedding`, to ``z`` at
    the decoder input. With the KL pressure, what the label says is cheaper
    to take from the label than to store in ``z``: shape variability comes
    from ``z``, the condition from the label [2]_. The embedding also scales
    ``z`` by ``exp(s(c))`` (zero-initialised, clipped), so that a condition
    can widen or narrow the variability it decodes to (age and status change
    the spread of the phantom's bundles).
``arvae`` (:class:`AttributeRegularizedVAE`)
    A VAE whose latent dimension ``j`` is tied to the ``j``-th continuous
    condition by Pati & Lerch's loss [3]_
    ``gamma * MAE(tanh(delta * D_r), sign(D_a))``, ``D_r`` the pairwise
    differences of ``z_j`` over the batch and ``D_a`` those of the attribute;
    categorical conditions go to the decoder (``conditional_decoder``).
    Generation sets ``z_j`` from the requested value through a monotone map
    fitted after training (:meth:`AttributeRegularizedVAE.fit_attribute_map`).
``aae`` (:class:`AdversarialAutoencoder`)
    Adversarial autoencoder [4]_ with a class-conditional prior: a Gaussian
    mixture with one component per bundle (means on orthogonal directions at
    ``prior_radius``, unit variance), and a :class:`Discriminator` on
    ``(z, one-hot bundle)``. The decoder takes the conditions too.

Adversarial training in one ``fit``
-----------------------------------
Keras 3's ``train_step`` is backend-specific; instead the whole minimax is
one loss minimised by the standard ``fit`` on every backend. The
discriminator ``D`` is evaluated twice on the encoded codes: on
``stop_gradient(z)`` (its own loss, ``softplus(D(z))`` for "fake"), and with
its *weights* behind ``stop_gradient`` (``Discriminator(frozen=True)``) for
the encoder's non-saturating loss ``softplus(-D(z))``; prior samples get
``softplus(-D(z_prior))``. Each term thus reaches only the parameters it is
meant for: the discriminator learns to tell prior from codes, the encoder to
fool it. (A gradient-reversal layer would give the saturating minimax
gradient, which vanishes once the discriminator wins.)

Mode collapse is watched, not assumed away: the trainer decodes prior samples
within one condition and compares their spread with the real bundle's
(the diversity check of :mod:`dipy_tractogen.generation.conditional`), during training
for the AAE (:class:`DiversityMonitor` stops the run and raises when the
decoded streamlines collapse) and in every conditional model's card.

Loss units: the reconstruction term is the FINTA summed squared error (in mm²
with the trainer's default ``loss_units="mm"``), so ``beta``, ``gamma`` and
``adversarial_weight`` are in the same units per streamline; for example
``beta`` is ``2 sigma²`` of a Gaussian decoder with ``sigma`` in mm
(``beta = 1`` trades one nat of KL for 1 mm² of summed squared error).

References
----------
.. [1] Higgins I, et al. beta-VAE: learning basic visual concepts with a
   constrained variational framework. ICLR 2017.
   https://openreview.net/forum?id=Sy2fzU9gl
.. [2] Sohn K, Lee H, Yan X. Learning structured output representation using
   deep conditional generative models. NeurIPS 2015.
   https://papers.nips.cc/paper/5775
.. [3] Pati A, Lerch A. Attribute-based regularization of latent spaces for
   variational auto-encoders. Neural Comput Appl 2021;33:4429-4444.
   doi:10.1007/s00521-020-05270-2
.. [4] Makhzani A, et al. Adversarial autoencoders. arXiv:1511.05644 (2015).
"""

import numpy as np

from dipy_tractogen._checks import check_number
from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.models.backend import Layer, keras, register_serializable
from dipy_tractogen.models.base import StreamlineAutoencoder, replica_count
from dipy_tractogen.models.conditions import ConditionEncoder
from dipy_tractogen.models.finta import (
    FintaAutoencoder,
    bottleneck_length,
    build_finta_decoder,
    build_finta_encoder,
)

__all__ = [
    "MODEL_TYPES",
    "GaussianSampling",
    "ConditionEmbedding",
    "Discriminator",
    "gaussian_kl",
    "attribute_regularization",
    "VariationalAutoencoder",
    "ConditionalVAE",
    "AttributeRegularizedVAE",
    "AdversarialAutoencoder",
    "build_model",
    "is_conditional",
]

_PACKAGE = "dipy_tractogen"


def _ops():
    return keras.ops


# --------------------------------------------------------------------------
# layers
# --------------------------------------------------------------------------


@register_serializable(package=_PACKAGE)
class GaussianSampling(Layer):
    """Reparameterised draw ``z = mu + exp(log_var / 2) * eps``.

    ``log_var`` is clipped to ``log_var_range`` first. Outside training the
    layer returns ``mu`` (deterministic encoding).

    Parameters
    ----------
    log_var_range : tuple of 2 float, optional
        Clamp of the log-variance.
    seed : int or None, optional
        Seed of the layer's ``keras.random.SeedGenerator``.
    **kwargs
        Passed to :class:`keras.layers.Layer`.
    """

    def __init__(self, log_var_range=(-10.0, 10.0), seed=None, **kwargs):
        super().__init__(**kwargs)
        lo, hi = (float(v) for v in log_var_range)
        if not lo < hi:
            raise InputError(f"log_var_range must be (low, high), got {log_var_range}")
        self.log_var_range = (lo, hi)
        self.seed = None if seed is None else int(seed)
        self.seed_generator = keras.random.SeedGenerator(self.seed)

    def call(self, inputs, training=False):
        mu, log_var = inputs
        if not training:
            return mu
        ops = _ops()
        log_var = ops.clip(log_var, *self.log_var_range)
        eps = keras.random.normal(ops.shape(mu), seed=self.seed_generator)
        return mu + ops.exp(0.5 * log_var) * eps

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        config = super().get_config()
        config.update(log_var_range=list(self.log_var_range), seed=self.seed)
        return config


@register_serializable(package=_PACKAGE)
class ConditionEmbedding(Layer):
    """Join a latent code and a condition vector at the decoder input.

    Returns ``concat([z * exp(s(c)), c])`` where ``s(c) = clip(c W + b,
    -max_log_scale, max_log_scale)`` is a per-dimension log-scale (``W``,
    ``b`` start at zero: the layer starts as a plain concatenation). The
    scale lets a condition set how far decoded shapes spread for a given
    spread of ``z`` (a conditional prior's width, learnt).

    Parameters
    ----------
    scale_latent : bool, optional
        Learn the scale ``s(c)``; False: plain concatenation.
    max_log_scale : float, optional
        Clamp of ``|s(c)|``.
    **kwargs
        Passed to :class:`keras.layers.Layer`.
    """

    def __init__(self, scale_latent=True, max_log_scale=3.0, **kwargs):
        super().__init__(**kwargs)
        self.scale_latent = bool(scale_latent)
        self.max_log_scale = float(max_log_scale)

    def build(self, input_shape):
        z_shape, c_shape = input_shape
        if self.scale_latent:
            self.kernel = self.add_weight(
                shape=(int(c_shape[-1]), int(z_shape[-1])),
                initializer="zeros",
                name="kernel",
            )
            self.bias = self.add_weight(
                shape=(int(z_shape[-1]),), initializer="zeros", name="bias"
            )
        self.built = True

    def call(self, inputs):
        ops = _ops()
        z, c = inputs
        c = ops.cast(c, z.dtype)
        if self.scale_latent:
            s = ops.clip(
                ops.matmul(c, self.kernel) + self.bias,
                -self.max_log_scale,
                self.max_log_scale,
            )
            z = z * ops.exp(s)
        return ops.concatenate([z, c], axis=-1)

    def compute_output_shape(self, input_shape):
        z_shape, c_shape = input_shape
        return (z_shape[0], int(z_shape[-1]) + int(c_shape[-1]))

    def get_config(self):
        config = super().get_config()
        config.update(scale_latent=self.scale_latent, max_log_scale=self.max_log_scale)
        return config


@register_serializable(package=_PACKAGE)
class Discriminator(Layer):
    """A small MLP critic whose weights can be frozen per call.

    ``call(x, frozen=True)`` reads every weight through ``stop_gradient``:
    gradients then reach the input (the encoder) but not the critic, which
    is how the adversarial losses of :class:`AdversarialAutoencoder` are
    optimised in one ``fit``.

    Parameters
    ----------
    hidden : sequence of int, optional
        Widths of the hidden ReLU layers.
    **kwargs
        Passed to :class:`keras.layers.Layer`.
    """

    def __init__(self, hidden=(256, 256), **kwargs):
        super().__init__(**kwargs)
        self.hidden = tuple(int(h) for h in hidden)
        if any(h < 1 for h in self.hidden):
            raise InputError(f"hidden widths must be >= 1, got {hidden}")

    def build(self, input_shape):
        width = int(input_shape[-1])
        self._kernels, self._biases = [], []
        for i, h in enumerate((*self.hidden, 1)):
            self._kernels.append(
                self.add_weight(
                    shape=(width, h), initializer="glorot_uniform", name=f"kernel_{i}"
                )
            )
            self._biases.append(
                self.add_weight(shape=(h,), initializer="zeros", name=f"bias_{i}")
            )
            width = h
        self.built = True

    def call(self, x, frozen=False):
        ops = _ops()
        n = len(self._kernels)
        for i, (w, b) in enumerate(zip(self._kernels, self._biases, strict=True)):
            w, b = ops.convert_to_tensor(w), ops.convert_to_tensor(b)
            if frozen:
                w, b = ops.stop_gradient(w), ops.stop_gradient(b)
            x = ops.matmul(x, w) + b
            if i < n - 1:
                x = ops.relu(x)
        return x

    def compute_output_shape(self, input_shape):
        return (input_shape[0], 1)

    def get_config(self):
        config = super().get_config()
        config["hidden"] = list(self.hidden)
        return config


# --------------------------------------------------------------------------
# loss terms (keras.ops, any backend)
# --------------------------------------------------------------------------


def gaussian_kl(mu, log_var):
    """KL divergence of ``N(mu, exp(log_var))`` from ``N(0, I)``, per row.

    Parameters
    ----------
    mu, log_var : tensor (B, d)

    Returns
    -------
    kl : tensor (B,)
        ``0.5 * sum(exp(log_var) + mu² - 1 - log_var)`` in nats.
    """
    ops = _ops()
    return 0.5 * ops.sum(ops.exp(log_var) + ops.square(mu) - 1.0 - log_var, axis=-1)


def attribute_regularization(latent, attribute, *, delta=10.0):
    """Pati & Lerch's attribute loss for one latent dimension, batch mean.

    ``mean |tanh(delta * D_r) - sign(D_a)|`` over all pairs of the batch,
    with ``D_r[i, k] = latent[i] - latent[k]`` and ``D_a`` likewise for the
    attribute: 0 when the latent dimension orders the batch exactly as the
    attribute does (and is flat where the attribute is equal).

    Parameters
    ----------
    latent, attribute : tensor (B,)
    delta : float, optional
        Sharpness of the tanh.

    Returns
    -------
    loss : scalar tensor

    References
    ----------
    .. [1] Pati A, Lerch A. Neural Comput Appl 2021;33:4429-4444.
       doi:10.1007/s00521-020-05270-2
    """
    ops = _ops()
    latent = ops.reshape(latent, (-1,))
    attribute = ops.cast(ops.reshape(attribute, (-1,)), latent.dtype)
    d_r = ops.expand_dims(latent, 1) - ops.expand_dims(latent, 0)
    d_a = ops.expand_dims(attribute, 1) - ops.expand_dims(attribute, 0)
    return ops.mean(ops.abs(ops.tanh(delta * d_r) - ops.sign(d_a)))


# --------------------------------------------------------------------------
# models
# --------------------------------------------------------------------------


def _finta_features(n_points, name):
    """The FINTA encoder's convolutions and flatten (shared, not copied)."""
    full = build_finta_encoder(latent_dim=1, n_points=n_points, name=f"{name}_full")
    return keras.Model(full.inputs, full.get_layer("flatten").output, name=name)


@register_serializable(package=_PACKAGE)
class VariationalAutoencoder(StreamlineAutoencoder):
    """beta-VAE on the FINTA backbone (the base of the conditional models).

    ``model(x)`` (or ``model((x, c))`` for a conditional model) maps
    normalised streamlines to their normalised reconstruction and, when
    training, adds the model's regularisers with ``add_loss``; compile it
    with the FINTA reconstruction loss
    (:class:`~dipy_tractogen.training.trainer.StreamlineSquaredError`).
    :meth:`encode` returns the posterior mean.

    Parameters
    ----------
    latent_dim : int, optional
        Size of the latent space.
    n_points : int, optional
        Points per streamline (a multiple of 32, >= 64).
    center, scale : optional
        Input normalisation (see
        :class:`~dipy_tractogen.models.base.StreamlineAutoencoder`).
    conditions : dict or None, optional
        :meth:`ConditionEncoder.get_config
        <dipy_tractogen.models.conditions.ConditionEncoder.get_config>` of the
        conditions. For the plain VAE they are only recorded (the seed bank
        can still select seeds by condition); conditional subclasses use them.
    beta : float, optional
        Weight of the KL term, in reconstruction-loss units per nat.
    log_var_range : tuple of 2 float, optional
        Clamp of the log-variance.
    batch_norm : bool, optional
        Batch normalisation of the features before the ``mu`` / ``log_var``
        heads (the 2024 attempt needed it against NaNs; here the clamped
        log-variance suffices, and in short runs the moving statistics lag
        behind the batch statistics: measured on the phantom after 2 epochs,
        the validation loss was 16 times the training loss with it).
    seed : int, optional
        Seed of the sampling layer (and of the AAE prior).
    **kwargs
        Passed to :class:`~dipy_tractogen.models.base.StreamlineAutoencoder`
        (``card``) and :class:`keras.Model` (``name``...).

    Attributes
    ----------
    encoder : keras.Model
        ``x`` (and encoder conditions) -> ``[mu, log_var]`` (``z`` for the AAE).
    decoder : keras.Model
        ``z`` (and decoder conditions) -> normalised streamlines.
    condition_encoder : ConditionEncoder or None
    """

    model_type = "vae"
    has_prior = True
    architecture_summary = (
        "beta-VAE on the FINTA backbone: FINTA conv encoder, flatten, "
        "[BatchNorm], Dense mu / log_var heads (log_var clamped), "
        "reparameterised z, FINTA decoder"
    )
    #: whether the networks take conditions (a subclass decides which)
    uses_conditions = False

    def __init__(
        self,
        *,
        latent_dim=32,
        n_points=256,
        center=(0.0, 0.0, 0.0),
        scale=1.0,
        conditions=None,
        beta=1.0,
        log_var_range=(-10.0, 10.0),
        batch_norm=False,
        seed=0,
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
        self.beta = check_number(beta, "beta")
        self.log_var_range = tuple(float(v) for v in log_var_range)
        self.batch_norm = bool(batch_norm)
        self.seed = int(seed)
        enc = ConditionEncoder.from_config(conditions) if conditions else None
        object.__setattr__(self, "_condition_encoder", enc)
        object.__setattr__(self, "_conditions_config", enc and enc.get_config())
        if self.uses_conditions and enc is None:
            raise ConditionError(
                f"a {self.model_type} model needs conditions (bundle, age...)"
            )
        self._build_networks()
        self.built = True

    # --- which condition columns go where --------------------------------------

    @property
    def condition_encoder(self):
        """The conditions the model was built with: a
        :class:`~dipy_tractogen.models.conditions.ConditionEncoder`, or None.

        Only those of the ``conditions`` argument (not a card's): the
        networks' inputs depend on them.
        """
        return self._condition_encoder

    # --- networks ---------------------------------------------------------------

    def _build_encoder(self, heads):
        inputs = [keras.Input((self.n_points, 3), name="streamlines")]
        h = _finta_features(self.n_points, "features")(inputs[0])
        n_enc = len(self._encoder_columns())
        if n_enc:
            inputs.append(keras.Input((n_enc,), name="conditions"))
            h = keras.layers.Concatenate(name="join")([h, inputs[1]])
        if self.batch_norm:
            h = keras.layers.BatchNormalization(name="bn")(h)
        outputs = [keras.layers.Dense(self.latent_dim, name=n)(h) for n in heads]
        return keras.Model(
            inputs if n_enc else inputs[0],
            outputs if len(outputs) > 1 else outputs[0],
            name="encoder",
        )

    def _build_decoder(self):
        n_dec = len(self._decoder_columns())
        z = keras.Input((self.latent_dim,), name="latent")
        backbone = build_finta_decoder(
            latent_dim=self.latent_dim + n_dec, n_points=self.n_points, name="backbone"
        )
        if not n_dec:
            return keras.Model(z, backbone(z), name="decoder")
        c = keras.Input((n_dec,), name="conditions")
        h = ConditionEmbedding(name="embedding")([z, c])
        return keras.Model([z, c], backbone(h), name="decoder")

    def _build_networks(self):
        self.encoder = self._build_encoder(("mu", "log_var"))
        self.decoder = self._build_decoder()
        self.sampling = GaussianSampling(
            self.log_var_range, seed=self.seed, name="sampling"
        )

    # --- Keras plumbing --------------------------------------------------------

    def build(self, input_shape):
        self.built = True

    def _split_inputs(self, inputs):
        if isinstance(inputs, dict):
            return inputs["streamlines"], inputs.get("conditions")
        if isinstance(inputs, (list, tuple)):
            if len(inputs) == 1:
                return inputs[0], None
            return inputs[0], inputs[1]
        return inputs, None

    def _take(self, c, columns):
        ops = _ops()
        if c is None:
            raise ConditionError(
                f"this {self.model_type} model needs conditions: call it on "
                "(streamlines, conditions)"
            )
        c = ops.cast(c, "float32")
        if len(columns) == self.n_conditions:
            return c
        return ops.take(c, columns, axis=1)

    def _encoder_inputs(self, x, c):
        cols = self._encoder_columns()
        return [x, self._take(c, cols)] if cols else x

    def _decoder_inputs(self, z, c):
        cols = self._decoder_columns()
        return [z, self._take(c, cols)] if cols else z

    def _posterior(self, x, c, training):
        mu, log_var = self.encoder(self._encoder_inputs(x, c), training=training)
        log_var = _ops().clip(log_var, *self.log_var_range)
        return mu, log_var

    def _regularize(self, x, c, mu, log_var, z, training):
        """Add the model's extra loss terms (subclasses)."""

    def add_summed_loss(self, value):
        """``add_loss`` for a term summed over the batch, like the recipe's
        reconstruction error.

        Keras takes ``add_loss`` terms for batch means: under a
        ``tf.distribute`` strategy it divides them by the number of replicas
        before the replicas' gradients are summed. A term summed over the
        replica's share of the batch must not be divided, or its weight
        would fall as 1 / replicas against the (summed) reconstruction term;
        this multiplies it back.

        Parameters
        ----------
        value : tensor
            The term, summed over the batch.
        """
        replicas = replica_count(self)
        self.add_loss(value * replicas if replicas > 1 else value)

    def call(self, inputs, training=False):
        ops = _ops()
        x, c = self._split_inputs(inputs)
        mu, log_var = self._posterior(x, c, training)
        z = self.sampling([mu, log_var], training=training)
        if self.beta:
            self.add_summed_loss(self.beta * ops.sum(gaussian_kl(mu, log_var)))
        self._regularize(x, c, mu, log_var, z, training)
        return self.decoder(self._decoder_inputs(z, c), training=training)

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(
            input_shape[0], (list, tuple)
        ):
            return tuple(input_shape[0])
        return tuple(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            conditions=self._conditions_config,
            beta=self.beta,
            log_var_range=list(self.log_var_range),
            batch_norm=self.batch_norm,
            seed=self.seed,
        )
        return config

    # --- the prior ------------------------------------------------------------

    def sample_latent(self, conditions=None, n=None, *, random_state=None):
        """Draw latent codes from the model's prior, one per condition row.

        Parameters
        ----------
        conditions : ndarray (N, n_conditions) or None
            Encoded conditions (ignored by the N(0, I) prior of the VAE
            family, used by the AAE's class-conditional prior and the
            AR-VAE's attribute dimensions).
        n : int, optional
            Number of draws when ``conditions`` is None.
        random_state : None, int or numpy.random.Generator

        Returns
        -------
        z : ndarray (N, latent_dim) float32
        """
        rng = np.random.default_rng(random_state)
        if conditions is not None:
            n = len(conditions)
        if n is None:
            raise InputError("give conditions or a number of draws n")
        return rng.standard_normal((int(n), self.latent_dim)).astype(np.float32)


@register_serializable(package=_PACKAGE)
class ConditionalVAE(VariationalAutoencoder):
    """Conditional VAE: conditions join the encoder features and ``z``.

    Parameters are those of :class:`VariationalAutoencoder`; ``conditions``
    is required and every condition goes to both the encoder (concatenated
    to the flattened features) and the decoder (:class:`ConditionEmbedding`).

    References
    ----------
    .. [1] Sohn K, Lee H, Yan X. NeurIPS 2015. https://papers.nips.cc/paper/5775
    .. [2] Zhao Q, et al. Variational autoencoder for regression: application
       to brain aging analysis. MICCAI 2019.
       doi:10.1007/978-3-030-32245-8_91
    """

    model_type = "cvae"
    uses_conditions = True
    architecture_summary = (
        "conditional beta-VAE on the FINTA backbone: conditions concatenated "
        "to the flattened encoder features and, with a learnt log-scale of z, "
        "to z at the decoder input"
    )

    def _encoder_columns(self):
        return list(range(self.n_conditions))

    def _decoder_columns(self):
        return list(range(self.n_conditions))


@register_serializable(package=_PACKAGE)
class AttributeRegularizedVAE(VariationalAutoencoder):
    """AR-VAE: continuous conditions tied to latent dimensions (Pati & Lerch).

    The ``j``-th continuous condition (in the order of the condition
    encoder) is tied to latent dimension ``j`` by
    :func:`attribute_regularization`, weighted by ``gamma`` and summed over
    the batch like the other terms. Categorical conditions go to the decoder
    when ``conditional_decoder`` is True.

    Parameters
    ----------
    gamma : float, optional
        Weight of the attribute loss (per streamline, loss units).
    delta : float, optional
        Sharpness of the tanh of the attribute loss.
    conditional_decoder : bool, optional
        Feed the categorical conditions to the decoder.
    **kwargs
        As for :class:`VariationalAutoencoder` (``conditions`` required,
        with at least one continuous condition).

    References
    ----------
    .. [1] Pati A, Lerch A. Attribute-based regularization of latent spaces
       for variational auto-encoders. Neural Comput Appl 2021;33:4429-4444.
       doi:10.1007/s00521-020-05270-2
    """

    model_type = "arvae"
    uses_conditions = True
    architecture_summary = (
        "attribute-regularised beta-VAE (AR-VAE) on the FINTA backbone: latent "
        "dimension j ordered like continuous condition j; categorical "
        "conditions to the decoder"
    )

    def __init__(self, *, gamma=10.0, delta=10.0, conditional_decoder=True, **kwargs):
        self.gamma = check_number(gamma, "gamma")
        self.delta = float(delta)
        if not self.delta > 0:
            raise InputError(f"delta must be > 0, got {delta}")
        self.conditional_decoder = bool(conditional_decoder)
        super().__init__(**kwargs)
        if not self.attribute_names:
            raise ConditionError(
                "an arvae model needs at least one continuous condition "
                "(age, length...) to regularise"
            )
        if len(self.attribute_names) > self.latent_dim:
            raise ConditionError(
                f"{len(self.attribute_names)} attributes for {self.latent_dim} "
                "latent dimensions"
            )

    @property
    def attribute_names(self):
        """Continuous conditions, tied to latent dimensions 0, 1, ..."""
        enc = self._condition_encoder
        return [s.name for s in enc.specs_ if s.kind == "continuous"]

    def _attribute_columns(self):
        return self._condition_encoder.columns(kind="continuous")

    def _decoder_columns(self):
        if not self.conditional_decoder:
            return []
        return self._condition_encoder.columns(kind="categorical")

    def _regularize(self, x, c, mu, log_var, z, training):
        if not self.gamma:
            return
        ops = _ops()
        c = self._take(c, list(range(self.n_conditions)))
        total = 0.0
        for j, col in enumerate(self._attribute_columns()):
            total = total + attribute_regularization(
                z[:, j], c[:, col], delta=self.delta
            )
        batch = ops.cast(ops.shape(z)[0], z.dtype)
        self.add_summed_loss(self.gamma * batch * total)

    def get_config(self):
        config = super().get_config()
        config.update(
            gamma=self.gamma,
            delta=self.delta,
            conditional_decoder=self.conditional_decoder,
        )
        return config

    def fit_attribute_map(self, streamlines, conditions, *, batch_size=4096):
        """Fit the monotone map attribute -> latent dimension, for generation.

        Encodes the streamlines, then fits, for each attribute ``j``, an
        increasing isotonic regression
        (:class:`sklearn.isotonic.IsotonicRegression`; the attribute loss
        orders ``z_j`` like the attribute) of ``mu_j`` on the attribute's
        scaled value; the knots are stored in
        :attr:`seed_bank` (``ar_x_<name>``, ``ar_y_<name>``) and used by
        :meth:`sample_latent`.

        Parameters
        ----------
        streamlines : ndarray (N, P, 3)
            Training streamlines in mm.
        conditions : ndarray (N, n_conditions)
            Their encoded conditions.
        batch_size : int, optional

        Returns
        -------
        fit : dict
            Per attribute: the Spearman correlation of ``mu_j`` with it.
        """
        from scipy.stats import spearmanr
        from sklearn.isotonic import IsotonicRegression

        conditions = np.asarray(conditions, dtype=np.float32)
        mu = self.encode(streamlines, conditions, batch_size=batch_size)
        bank = dict(self.seed_bank)
        out = {}
        for j, (name, col) in enumerate(
            zip(self.attribute_names, self._attribute_columns(), strict=True)
        ):
            a = conditions[:, col].astype(np.float64)
            iso = IsotonicRegression(increasing=True, out_of_bounds="clip")
            iso.fit(a, mu[:, j])
            grid = np.linspace(-1.0, 1.0, 65)
            bank[f"ar_x_{name}"] = grid.astype(np.float32)
            bank[f"ar_y_{name}"] = iso.predict(grid).astype(np.float32)
            rho = spearmanr(a, mu[:, j]).statistic if np.ptp(a) > 0 else np.nan
            out[name] = {"latent_dim": j, "spearman": float(rho)}
        self.seed_bank = bank
        return out

    def sample_latent(self, conditions=None, n=None, *, random_state=None):
        z = super().sample_latent(conditions, n, random_state=random_state)
        if conditions is None:
            return z
        conditions = np.asarray(conditions, dtype=np.float32)
        bank = self.seed_bank
        for j, (name, col) in enumerate(
            zip(self.attribute_names, self._attribute_columns(), strict=True)
        ):
            if f"ar_x_{name}" not in bank:
                continue
            xs, ys = bank[f"ar_x_{name}"], bank[f"ar_y_{name}"]
            z[:, j] = np.interp(conditions[:, col], xs, ys)
        return z


@register_serializable(package=_PACKAGE)
class AdversarialAutoencoder(VariationalAutoencoder):
    """Adversarial autoencoder with a class-conditional Gaussian-mixture prior.

    A deterministic encoder ``z = E(x)``; the prior is ``N(m_k, I)`` for
    bundle ``k`` (``m_k`` orthogonal directions at distance
    ``prior_radius``), or ``N(0, I)`` without a bundle condition. A
    :class:`Discriminator` on ``(z, one-hot bundle)`` tells prior draws from
    codes; see the module docstring for the one-``fit`` losses. The decoder
    takes every condition (``conditional_decoder``).

    With ``discriminator_conditions="all"`` the discriminator sees every
    condition, not only the bundle, while the prior depends on the bundle
    alone: the codes' distribution is then pushed to be the same whatever
    the age, status or length (adversarial label-invariance), so that the
    decoder has to take those effects from the labels.

    Parameters
    ----------
    adversarial_weight : float, optional
        Weight of the adversarial terms (loss units per nat and streamline).
    prior_radius : float, optional
        Distance of each bundle's prior mean from the origin.
    discriminator_hidden : sequence of int, optional
        Hidden widths of the discriminator.
    conditional_decoder : bool, optional
        Feed the conditions to the decoder.
    discriminator_conditions : {"bundle", "all"}, optional
        Conditions the discriminator sees with ``z``.
    **kwargs
        As for :class:`VariationalAutoencoder` (``beta``, ``log_var_range``
        are not used).

    References
    ----------
    .. [1] Makhzani A, Shlens J, Jaitly N, Goodfellow I, Frey B. Adversarial
       autoencoders. arXiv:1511.05644 (2015).
    """

    model_type = "aae"
    architecture_summary = (
        "adversarial autoencoder on the FINTA backbone: deterministic encoder, "
        "class-conditional Gaussian-mixture prior (one component per bundle), "
        "MLP discriminator on (z, bundle), conditional decoder"
    )

    def __init__(
        self,
        *,
        adversarial_weight=1.0,
        prior_radius=4.0,
        discriminator_hidden=(256, 256),
        conditional_decoder=True,
        discriminator_conditions="bundle",
        **kwargs,
    ):
        if discriminator_conditions not in ("bundle", "all"):
            raise InputError(
                "discriminator_conditions must be 'bundle' or 'all', got "
                f"{discriminator_conditions!r}"
            )
        self.discriminator_conditions = discriminator_conditions
        self.adversarial_weight = check_number(adversarial_weight, "adversarial_weight")
        self.prior_radius = float(prior_radius)
        self.discriminator_hidden = tuple(int(h) for h in discriminator_hidden)
        self.conditional_decoder = bool(conditional_decoder)
        kwargs.setdefault("beta", 0.0)
        super().__init__(**kwargs)

    def _bundle_columns(self):
        enc = self._condition_encoder
        if enc is None or "bundle" not in enc.condition_names:
            return []
        return enc.columns(["bundle"])

    def _decoder_columns(self):
        if not self.conditional_decoder:
            return []
        return list(range(self.n_conditions))

    def _discriminator_columns(self):
        if self.discriminator_conditions == "all":
            return list(range(self.n_conditions))
        return self._bundle_columns()

    @property
    def prior_means(self):
        """Means of the prior's components, ndarray (K, latent_dim)."""
        k = len(self._bundle_columns())
        if k == 0:
            return np.zeros((1, self.latent_dim), np.float32)
        rng = np.random.default_rng(self.seed)
        a = rng.standard_normal((max(self.latent_dim, k), max(self.latent_dim, k)))
        q, _ = np.linalg.qr(a)
        means = q[: self.latent_dim, :k].T
        means /= np.linalg.norm(means, axis=1, keepdims=True)
        return (self.prior_radius * means).astype(np.float32)

    def _build_networks(self):
        self.encoder = self._build_encoder(("z",))
        self.decoder = self._build_decoder()
        self.discriminator = Discriminator(
            self.discriminator_hidden, name="discriminator"
        )
        k = len(self._discriminator_columns())
        self.discriminator.build((None, self.latent_dim + k))
        object.__setattr__(self, "_prior_means", self.prior_means)
        self.prior_seed = keras.random.SeedGenerator(self.seed + 1)

    def call(self, inputs, training=False):
        ops = _ops()
        x, c = self._split_inputs(inputs)
        z = self.encoder(self._encoder_inputs(x, c), training=training)
        if training and self.adversarial_weight:
            cols = self._bundle_columns()
            noise = keras.random.normal(ops.shape(z), seed=self.prior_seed)
            if cols:
                onehot = self._take(c, cols)
                means = ops.convert_to_tensor(self._prior_means)
                z_prior = ops.matmul(onehot, means) + noise
            else:
                z_prior = noise
            d_cols = self._discriminator_columns()
            seen = self._take(c, d_cols) if d_cols else None

            def d_input(v):
                return v if seen is None else ops.concatenate([v, seen], axis=-1)

            disc = self.discriminator
            real = disc(d_input(z_prior))
            fake_d = disc(d_input(ops.stop_gradient(z)))
            fake_g = disc(d_input(z), frozen=True)
            loss_d = ops.sum(ops.softplus(-real)) + ops.sum(ops.softplus(fake_d))
            loss_g = ops.sum(ops.softplus(-fake_g))
            self.add_summed_loss(self.adversarial_weight * (loss_d + loss_g))
        return self.decoder(self._decoder_inputs(z, c), training=training)

    def encode(self, streamlines, conditions=None, *, batch_size=4096):
        """Encode streamlines in mm to latent codes ``z`` (deterministic)."""
        return super().encode(streamlines, conditions, batch_size=batch_size)

    def sample_latent(self, conditions=None, n=None, *, random_state=None):
        """Draw from the class-conditional prior of each row's bundle."""
        z = super().sample_latent(conditions, n, random_state=random_state)
        cols = self._bundle_columns()
        if conditions is None or not cols:
            return z
        onehot = np.asarray(conditions, dtype=np.float32)[:, cols]
        return (z + onehot @ self._prior_means).astype(np.float32)

    def get_config(self):
        config = super().get_config()
        config.update(
            adversarial_weight=self.adversarial_weight,
            prior_radius=self.prior_radius,
            discriminator_hidden=list(self.discriminator_hidden),
            conditional_decoder=self.conditional_decoder,
            discriminator_conditions=self.discriminator_conditions,
        )
        return config


# --------------------------------------------------------------------------
# factory
# --------------------------------------------------------------------------

_CLASSES = {
    "vae": VariationalAutoencoder,
    "cvae": ConditionalVAE,
    "arvae": AttributeRegularizedVAE,
    "aae": AdversarialAutoencoder,
}
#: model types built here (``"ae"`` is the plain FINTA autoencoder)
MODEL_TYPES = ("ae", *_CLASSES)


def build_model(model_type, **kwargs):
    """Build a model of a given type (the trainer's factory).

    Parameters
    ----------
    model_type : {"ae", "vae", "cvae", "arvae", "aae"}
        ``"ae"`` is :class:`~dipy_tractogen.models.finta.FintaAutoencoder`
        (extra keyword arguments of the other types are ignored for it).
    **kwargs
        Constructor arguments (``latent_dim``, ``n_points``, ``center``,
        ``scale``, ``conditions``, ``beta``...).

    Returns
    -------
    model : StreamlineAutoencoder
        Built (one forward pass on zeros), ready to compile.

    Raises
    ------
    InputError
        On an unknown model type.
    """
    if model_type == "ae":
        keep = ("latent_dim", "n_points", "center", "scale", "card", "name")
        model = FintaAutoencoder(**{k: v for k, v in kwargs.items() if k in keep})
        model(np.zeros((1, model.n_points, 3), np.float32))
        return model
    cls = _CLASSES.get(model_type)
    if cls is None:
        raise InputError(
            f"unknown model type {model_type!r}; use one of {', '.join(MODEL_TYPES)}"
        )
    model = cls(**kwargs)
    x = np.zeros((1, model.n_points, 3), np.float32)
    if model.n_conditions:
        model((x, np.zeros((1, model.n_conditions), np.float32)))
    else:
        model(x)
    return model


def is_conditional(model):
    """Whether ``model`` decodes with a condition vector.

    Kept for compatibility: the same as ``model.is_conditional``.
    """
    return bool(model.is_conditional)
