"""matplotlib figures: non-empty PNGs written atomically, bad input refused."""

import csv

import numpy as np
import pytest

from dipy_tractogen.errors import InputError, OutputExistsError
from dipy_tractogen.viz.plots import (
    plot_attribute_histograms,
    plot_latent_projection,
    plot_loss_curves,
    plot_requested_vs_measured,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _check_png(path, min_size=(200, 200)):
    from matplotlib.image import imread

    data = open(path, "rb").read()
    assert data[:8] == PNG_MAGIC
    img = imread(path)
    assert img.shape[0] >= min_size[1] and img.shape[1] >= min_size[0]
    # something is drawn: not a single colour
    assert img[..., :3].reshape(-1, 3).std(axis=0).max() > 0.05
    return img


def _only(tmp_path, *names):
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


def test_loss_curves_from_dict_rows_and_csv(tmp_path):
    hist = {"loss": [1.0, 0.5, 0.2, 0.1], "val_loss": [1.2, 0.6, 0.3, 0.25]}
    p = plot_loss_curves(hist, tmp_path / "a.png", title="FINTA")
    assert p == str(tmp_path / "a.png")
    _check_png(p)
    rows = [
        {"epoch": i, "streamline_loss": 1 / i, "val_streamline_loss": "", "x": 1}
        for i in range(1, 6)
    ]
    _check_png(plot_loss_curves(rows, tmp_path / "b.png"))
    with open(tmp_path / "log.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["epoch", "streamline_loss", "learning_rate"])
        w.writeheader()
        for i in range(1, 6):
            w.writerow({"epoch": i, "streamline_loss": 2 / i, "learning_rate": 1e-3})
    _check_png(plot_loss_curves(tmp_path / "log.csv", tmp_path / "c.png"))
    _only(tmp_path, "a.png", "b.png", "c.png", "log.csv")


def test_loss_curves_bad_input(tmp_path):
    with pytest.raises(InputError, match="no loss column"):
        plot_loss_curves({"accuracy": [1, 2]}, tmp_path / "a.png")
    with pytest.raises(InputError, match="cannot read training log"):
        plot_loss_curves(tmp_path / "missing.csv", tmp_path / "a.png")
    (tmp_path / "a.png").write_bytes(b"keep")
    with pytest.raises(OutputExistsError):
        plot_loss_curves({"loss": [1.0]}, tmp_path / "a.png")
    assert (tmp_path / "a.png").read_bytes() == b"keep"


def test_latent_projection_pca_and_tsne(tmp_path):
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(0, 1, (40, 6)), rng.normal(4, 1, (40, 6))])
    ids = np.repeat([0, 2], 40)
    p = plot_latent_projection(
        Z,
        tmp_path / "latent.png",
        bundle_ids=ids,
        bundle_names=["AF_L", "x", "CST_R"],
        covariates={"age": rng.uniform(20, 80, 80), "sex": np.repeat(["F", "M"], 40)},
        max_tsne_points=50,
    )
    img = _check_png(p, min_size=(600, 400))
    # 2 rows (PCA, t-SNE) x 3 columns (bundle, age, sex): wider than tall
    assert img.shape[1] > img.shape[0]


def test_latent_projection_bad_input(tmp_path):
    with pytest.raises(InputError, match="latents must be"):
        plot_latent_projection(np.zeros((10, 1)), tmp_path / "a.png")
    with pytest.raises(InputError, match="bundle_ids has 3 entries"):
        plot_latent_projection(
            np.zeros((10, 2)), tmp_path / "a.png", bundle_ids=[0, 1, 2]
        )
    with pytest.raises(InputError, match="unknown projection"):
        plot_latent_projection(np.zeros((10, 2)), tmp_path / "a.png", methods=["umap"])
    _only(tmp_path)


def _arcs(n, radius, rng):
    t = np.linspace(0, np.pi, 32)
    r = radius + rng.normal(0, 2, (n, 1))
    return np.stack([r * np.cos(t), r * np.sin(t), np.zeros((n, 32))], axis=-1)


def test_attribute_histograms_real_vs_generated(tmp_path):
    rng = np.random.default_rng(1)
    real = np.concatenate([_arcs(30, 20, rng), _arcs(30, 40, rng)])
    gen = np.concatenate([_arcs(50, 21, rng), _arcs(20, 38, rng)])
    p = plot_attribute_histograms(
        gen,
        tmp_path / "h.png",
        real=real,
        generated_bundle_ids=np.repeat([0, 1], [50, 20]),
        real_bundle_ids=np.repeat([0, 1], 30),
        bundle_names={0: "small", 1: "large"},
    )
    _check_png(p, min_size=(600, 300))
    # generated only, a list of streamlines of different lengths
    gen_list = [g[: 10 + i % 20] for i, g in enumerate(gen)]
    _check_png(plot_attribute_histograms(gen_list, tmp_path / "g.png"))
    with pytest.raises(InputError, match="unknown attribute"):
        plot_attribute_histograms(gen, tmp_path / "x.png", attributes=["fa"])
    with pytest.raises(InputError, match="real_bundle_ids has 2 entries"):
        plot_attribute_histograms(
            gen, tmp_path / "x.png", real=real, real_bundle_ids=[0, 1]
        )


def test_requested_vs_measured(tmp_path):
    rng = np.random.default_rng(2)
    q = rng.uniform(20, 80, 100)
    p = plot_requested_vs_measured(
        q, q + rng.normal(0, 3, 100), tmp_path / "r.png", units="years"
    )
    _check_png(p)
    p = plot_requested_vs_measured(
        {"age": q, "length": q * 2},
        {"age": q, "length": q * 2 + 1},
        tmp_path / "r2.png",
        bundle_ids=np.arange(100) % 3,
    )
    _check_png(p, min_size=(600, 300))
    with pytest.raises(InputError, match="same attributes"):
        plot_requested_vs_measured({"age": q}, {"sex": q}, tmp_path / "x.png")
    with pytest.raises(InputError, match="fewer than 2 finite"):
        plot_requested_vs_measured([1.0, np.nan], [1.0, 2.0], tmp_path / "x.png")
    with pytest.raises(InputError, match="3 requested values for 2"):
        plot_requested_vs_measured([1.0, 2, 3], [1.0, 2.0], tmp_path / "x.png")
    _only(tmp_path, "r.png", "r2.png")


def test_condition_features_plot(tmp_path, condition_sweep):
    from matplotlib.image import imread

    from dipy_tractogen.evaluation.features import condition_features
    from dipy_tractogen.viz.plots import plot_condition_features

    table = condition_features(condition_sweep["sweep"])
    for r in table["rows"]:  # a training side to draw dashed
        r["training_spread_mm"] = r["spread_mm"] * 0.9
    out = plot_condition_features(table, tmp_path / "f.png",
                                  features=("spread_mm", "volume_mm3"))  # fmt: skip
    h, w = imread(out).shape[:2]
    assert w > h > 300  # 2 bundles across, 2 features down
    with pytest.raises(OutputExistsError):
        plot_condition_features(table, out)
    with pytest.raises(InputError, match="unknown feature"):
        plot_condition_features(table, tmp_path / "g.png", features=("width",))
    one = condition_features(condition_sweep["single"])
    with pytest.raises(InputError, match="no condition has several values"):
        plot_condition_features(one, tmp_path / "h.png")
    assert not (tmp_path / "g.png").exists() and not (tmp_path / "h.png").exists()
