"""Import of the published FINTA PyTorch checkpoint into the Keras model."""

import importlib.util
import json
import pickle
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import load_bench_script

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import (  # noqa: E402
    InputError,
    ModelError,
    OutputExistsError,
    TractogramError,
)
from dipy_tractogen.models.convert import (  # noqa: E402
    PUBLISHED_LICENSE,
    TorchUnavailableError,
    convert_finta_checkpoint,
    keras_weights_from_state_dict,
    published_layout,
    read_bundle_names,
)

HAVE_TORCH = importlib.util.find_spec("torch") is not None
needs_torch = pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch is not installed")
CMD = "dipy_convert_finta_weights"
NAMES = ["arch", "uturn"]


def _torch_finta_module():
    """``bench/torch_finta.py``: the PyTorch network written from the spec."""
    return load_bench_script("torch_finta")


def _space():
    """A 240 mm cube of 2 mm voxels centred on the origin: it holds the phantom
    and what a random-weight network decodes (generation keeps only streamlines
    inside the reference grid)."""
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -119.0
    return (affine, (120, 120, 120), (2.0, 2.0, 2.0), "RAS")


def _space_image():
    import nibabel as nib

    affine, dims, _, _ = _space()
    return nib.Nifti1Image(np.zeros(dims, np.uint8), affine)


def _zeros_state_dict():
    """A numpy state_dict in the published layout (no torch needed)."""
    return {k: np.zeros(s, np.float32) for k, s in published_layout().items()}


def _one_bundle_files(folder, names, *, count=6):
    """Phantom bundles as plain .trk files (no bundle data), one per name."""
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=count, seed=4)
    files = []
    for name in names:
        b = ph.bundle_names.index(name)
        lines = [
            s for s, i in zip(ph.streamlines, ph.bundle_ids, strict=True) if i == b
        ]
        files.append(Path(folder) / f"{name}.trk")
        sft = StatefulTractogram(lines, _space_image(), Space.RASMM)
        save_tractogram(sft, str(files[-1]))
    return files


def _listing(folder):
    return sorted(p.name for p in Path(folder).iterdir())


@pytest.fixture(scope="module")
def torch_net():
    if not HAVE_TORCH:
        pytest.skip("PyTorch is not installed")
    import torch

    torch.manual_seed(0)
    net = _torch_finta_module().TorchFinta()
    with torch.no_grad():  # outputs of tens of mm, like a trained network
        net.decod_conv6[1].weight.mul_(500.0)
        net.decod_conv6[1].bias.normal_(0.0, 20.0)
    return net.eval()


@pytest.fixture(scope="module")
def checkpoint(torch_net, tmp_path_factory):
    """A checkpoint in the published layout: epoch, state_dict, lowest_loss,
    optimizer (with Adam state after one step)."""
    import torch

    optimizer = torch.optim.Adam(torch_net.parameters(), lr=1e-12)
    x = torch.zeros(2, 256, 3)
    (torch_net(x) ** 2).sum().backward()
    optimizer.step()  # lr 1e-12: weights unchanged in float32
    optimizer.zero_grad()
    path = tmp_path_factory.mktemp("ckpt") / "best_model.pt"
    torch.save(
        {
            "epoch": 7,
            "state_dict": torch_net.state_dict(),
            "lowest_loss": np.float64(12.5),  # numpy scalar metadata
            "optimizer": optimizer.state_dict(),
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def converted(checkpoint, tmp_path_factory):
    from dipy_tractogen.models.convert import file_md5
    from dipy_tractogen.models.files import load_model

    out = tmp_path_factory.mktemp("model") / "finta_published.keras"
    convert_finta_checkpoint(
        checkpoint,
        out,
        expected_md5=file_md5(checkpoint),
        reference=_space(),
        bundle_names=NAMES,
    )
    return out, load_model(out)


# --- layout and numerical equivalence ------------------------------------------


def test_published_layout():
    layout = published_layout()
    assert len(layout) == 28
    assert layout["encod_conv1.1.weight"] == (32, 3, 3)
    assert layout["encod_conv6.1.weight"] == (1024, 512, 3)
    assert layout["fc1.weight"] == (32, 8192)
    assert layout["fc2.weight"] == (8192, 32)
    assert layout["decod_conv6.1.weight"] == (3, 32, 3)
    assert sum(int(np.prod(s)) for s in layout.values()) == 4_726_307


@needs_torch
def test_reference_network_has_the_published_keys(torch_net):
    state = torch_net.state_dict()
    assert list(state) == list(published_layout())
    for key, shape in published_layout().items():
        assert tuple(state[key].shape) == shape


def test_flatten_order_mapping():
    """fc1/fc2 weights follow PyTorch's (C, L) flatten into Keras' (L, C)."""
    state = _zeros_state_dict()
    state["fc1.weight"][5, 3 * 8 + 2] = 1.0  # latent 5 reads channel 3, point 2
    state["fc2.weight"][7 * 8 + 4, 9] = 2.0  # latent 9 writes channel 7, point 4
    state["fc2.bias"][7 * 8 + 4] = 3.0
    w = keras_weights_from_state_dict(state)
    assert np.argwhere(w["fc1"][0]).tolist() == [[2 * 1024 + 3, 5]]
    assert np.argwhere(w["fc2"][0]).tolist() == [[9, 4 * 1024 + 7]]
    assert np.argwhere(w["fc2"][1]).tolist() == [[4 * 1024 + 7]]
    state["encod_conv2.1.weight"][10, 4, 2] = 1.0  # (out, in, k)
    w = keras_weights_from_state_dict(state)
    assert w["e2"][0].shape == (3, 32, 64)
    assert np.argwhere(w["e2"][0]).tolist() == [[2, 4, 10]]


@needs_torch
def test_matches_pytorch_on_random_and_phantom_streamlines(torch_net, converted):
    import torch

    from dipy_tractogen.measures.resampling import resample_streamlines
    from dipy_tractogen.phantom import generate_phantom

    _, model = converted
    assert np.allclose(model.center, 0) and model.scale == 1.0
    phantom = resample_streamlines(generate_phantom(counts=5).streamlines, n_points=256)
    rng = np.random.default_rng(1)
    random = rng.normal(0.0, 50.0, size=(8, 256, 3)).astype(np.float32)
    for x in (phantom, random):
        with torch.no_grad():
            z_ref = torch_net.encode(torch.from_numpy(x)).numpy()
            y_ref = torch_net.decode(torch.from_numpy(z_ref)).numpy()
        assert np.abs(y_ref).max() > 10.0  # outputs in tens of mm
        z = model.encode(x)
        y = model.decode(z_ref)
        assert np.abs(z - z_ref).max() <= 1e-5
        assert np.abs(y - y_ref).max() <= 1e-4  # mm


@needs_torch
def test_card_and_space(converted, checkpoint):
    from dipy_tractogen.models.convert import file_md5
    from dipy_tractogen.models.files import card_paths
    from dipy_tractogen.models.seed_bank import model_bundle_names, model_reference

    path, model = converted
    card = model.card
    assert card["source"]["file"] == checkpoint.name
    assert card["source"]["md5"] == file_md5(checkpoint)
    assert card["source"]["is_published_file"] is False
    assert card["source"]["epoch"] == 7
    assert card["source"]["lowest_loss"] == 12.5
    assert card["license"] == PUBLISHED_LICENSE
    assert "non-commercial" in card["license"].lower()
    assert any("10.1016/j.media.2021.102126" in c for c in card["citations"])
    assert any("10.1016/j.media.2023.102761" in c for c in card["citations"])
    assert card["normalization"]["center"] == [0.0, 0.0, 0.0]
    assert card["normalization"]["scale"] == 1.0
    assert "MNI" in card["space"]
    assert model_bundle_names(model) == NAMES
    affine, dims, vox, order = model_reference(model)
    space = _space()
    np.testing.assert_allclose(affine, space[0])
    assert tuple(dims) == tuple(space[1]) and order == "RAS"
    assert "latents" not in model.seed_bank
    json_path, md_path = card_paths(path)
    assert json.loads(json_path.read_text())["source"]["epoch"] == 7
    assert "lowest_loss" in md_path.read_text()


@needs_torch
def test_numpy_1_metadata_is_read(tmp_path):
    """A checkpoint pickled under numpy 1.x (``numpy.core`` scalar of its
    ``lowest_loss``) loads with weights_only=True; weights are torch tensors."""
    import torch

    from dipy_tractogen.models.convert import read_finta_checkpoint

    state = {k: torch.from_numpy(v) for k, v in _zeros_state_dict().items()}
    saved = tmp_path / "np2.pt"
    torch.save({"epoch": 3, "state_dict": state, "lowest_loss": np.float64(2.5)}, saved)
    old = tmp_path / "np1.pt"
    with zipfile.ZipFile(saved) as zin, zipfile.ZipFile(old, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename.endswith("data.pkl"):
                assert b"numpy._core.multiarray" in data
                data = data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
            zout.writestr(item, data)
    for path in (saved, old):
        weights, info = read_finta_checkpoint(path)
        assert info["epoch"] == 3 and info["lowest_loss"] == 2.5
        assert weights["fc1"][0].shape == (8192, 32)


def test_bare_state_dict_without_torch(tmp_path):
    """An in-memory state_dict of numpy arrays converts; no space stored."""
    out = tmp_path / "m.keras"
    state = _zeros_state_dict()
    state["decod_conv6.1.bias"][:] = (1.0, -2.0, 3.0)
    model = convert_finta_checkpoint(state, out)
    assert out.is_file() and model.seed_bank == {}
    y = model.decode(np.zeros((2, 32)))
    np.testing.assert_allclose(y[0, 0], (1.0, -2.0, 3.0))
    assert model.card["source"]["md5"] is None


@needs_torch
def test_generate_from_seed_tractogram(converted, tmp_path):
    """The converted model generates from a user's seed bundles like any model."""
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.io.tractograms import load_bundles, save_bundles
    from dipy_tractogen.phantom import generate_phantom

    path, _ = converted
    ph = generate_phantom(counts=6, seed=3)
    keep = np.isin(ph.bundle_ids, [ph.bundle_names.index(n) for n in NAMES])
    ids = np.array([NAMES.index(ph.bundle_names[i]) for i in ph.bundle_ids[keep]])
    seeds = tmp_path / "seeds.trx"
    streamlines = [s for s, k in zip(ph.streamlines, keep, strict=True) if k]
    save_bundles(seeds, streamlines, _space(), bundle_ids=ids, bundle_names=NAMES)
    out = tmp_path / "generated.trx"
    report = generate_tractogram(
        out,
        model=path,
        n_streamlines=8,
        seeds=seeds,
        apply_filters=False,
        chunk_size=16,
        seed=0,
    )
    assert report.complete
    sft, out_ids, names, _ = load_bundles(out, bbox_valid_check=False)
    assert len(sft.streamlines) == 8
    assert sorted(names.values()) == NAMES
    assert set(np.unique(out_ids)) == {0, 1}


@needs_torch
def test_seed_files_stored_then_generate_and_filter(checkpoint, tmp_path):
    """One-bundle files named after their bundle (as the RecoBundlesX atlas)
    become the model's seed bank: generation with the latent filter and FINTA
    filtering then work from the model file alone."""
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.models.files import load_model

    files = _one_bundle_files(tmp_path, ("uturn", "arch"))
    path = tmp_path / "seeded.keras"
    convert_finta_checkpoint(checkpoint, path, seeds=files)
    model = load_model(path)
    assert model.card["bundle_names"] == ["uturn", "arch"]
    assert model.card["seeds"]["streamlines"] == {"uturn": 6, "arch": 6}
    bank = model.seed_bank
    assert bank["latents"].shape == (24, 32)
    assert np.bincount(bank["labels"]).tolist() == [12, 12]
    np.testing.assert_allclose(bank["affine"], _space()[0])

    out = tmp_path / "generated.trx"
    report = generate_tractogram(  # random weights: no latent filter
        out, model=path, n_streamlines=6, min_length=0.0, latent_filter=False
    )
    assert report.complete and out.is_file()
    assert report.produced == {"uturn": 3, "arch": 3}

    plausibility = pytest.importorskip("dipy_tractogen.generation.plausibility")
    kept = tmp_path / "kept.trx"
    plausibility.filter_tractogram(files[1], kept, model=path, percentile=100.0)
    from dipy_tractogen.io.tractograms import load_tractogram_checked

    # the seeds themselves lie at latent distance 0: all kept
    assert len(load_tractogram_checked(kept).streamlines) == 6


def test_seed_names_must_be_known(tmp_path):
    from dipy_tractogen.errors import ConditionError
    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=2)
    seeds = tmp_path / "in" / "seeds.trx"
    seeds.parent.mkdir()
    save_bundles(seeds, ph.streamlines[:2], _space(), bundle_names=["CST_L"])
    message = _refuses(
        tmp_path,
        _zeros_state_dict(),
        ConditionError,
        "seed bundle 'CST_L'",
        seeds=seeds,
        bundle_names=["AF_L"],
    )
    assert "AF_L" in message
    _refuses(
        tmp_path / "b", _zeros_state_dict(), TractogramError, "not found", seeds="x.trk"
    )


# --- bad inputs: one-line errors, nothing written ------------------------------


def _refuses(tmp_path, source, error, match, **kwargs):
    out_dir = tmp_path / "out"
    out_dir.mkdir(parents=True)
    with pytest.raises(error, match=match) as info:
        convert_finta_checkpoint(source, out_dir / "m.keras", **kwargs)
    assert "\n" not in str(info.value)
    assert _listing(out_dir) == []
    return str(info.value)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda s: s.pop("decod_conv3.1.bias"), r"missing key 'decod_conv3\.1\.bias'"),
        (
            lambda s: s.update({"fc1.weight": np.zeros((16, 8192), np.float32)}),
            r"'fc1\.weight' has shape \(16, 8192\), expected \(32, 8192\)",
        ),
        (
            lambda s: s.update({"extra.weight": np.zeros(3, np.float32)}),
            r"unexpected key 'extra\.weight'",
        ),
        (
            lambda s: s.update({"fc2.bias": np.zeros(8192, np.int64)}),
            r"'fc2\.bias' holds int64",
        ),
        (
            lambda s: s["fc2.bias"].__setitem__(3, np.nan),
            r"'fc2\.bias' holds NaN",
        ),
    ],
)
def test_bad_state_dict(tmp_path, edit, match):
    state = _zeros_state_dict()
    edit(state)
    _refuses(tmp_path, {"epoch": 1, "state_dict": state}, ModelError, match)


def test_missing_key_message_names_expected_shape(tmp_path):
    state = _zeros_state_dict()
    del state["encod_conv2.1.weight"]
    message = _refuses(tmp_path, state, ModelError, "missing key")
    assert "'encod_conv2.1.weight'" in message and "(64, 32, 3)" in message


def test_not_a_state_dict(tmp_path):
    _refuses(tmp_path, {"epoch": 1, "lr": 0.1}, ModelError, "not a FINTA checkpoint")
    _refuses(tmp_path / "b", {"state_dict": [1, 2]}, ModelError, "not a mapping")


@needs_torch
@pytest.mark.parametrize(
    "kind, match",
    [
        ("random", "not a PyTorch weights checkpoint"),
        ("zip", "not a PyTorch weights checkpoint"),
        ("pickle", r"not a PyTorch weights checkpoint.*Unsupported global"),
        ("empty", "not a PyTorch weights checkpoint"),
        ("list", "holds a list, not a FINTA checkpoint"),
    ],
)
def test_not_a_checkpoint_file(tmp_path, kind, match):
    import torch

    path = tmp_path / "bad.pt"
    if kind == "random":
        path.write_bytes(np.random.default_rng(0).bytes(4096))
    elif kind == "zip":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("notes/readme.txt", "not weights")
    elif kind == "pickle":  # code a weights_only load must refuse to run
        torch.save({"state_dict": {}, "hook": InputError("x")}, path)
    elif kind == "empty":
        path.write_bytes(b"")
    else:
        torch.save([1, 2, 3], path)
    _refuses(tmp_path, path, ModelError, match)


@needs_torch
def test_missing_key_in_file(tmp_path, torch_net):
    import torch

    state = dict(torch_net.state_dict())
    del state["fc2.weight"]
    path = tmp_path / "ckpt.pt"
    torch.save({"epoch": 1, "state_dict": state}, path)
    message = _refuses(tmp_path, path, ModelError, r"missing key 'fc2\.weight'")
    assert message.startswith("ckpt.pt:") and "(8192, 32)" in message


def test_wrong_md5_nothing_written(tmp_path):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(pickle.dumps({"a": 1}))  # never unpickled: md5 comes first
    message = _refuses(
        tmp_path, path, ModelError, "md5 mismatch", expected_md5="0" * 32
    )
    assert str(path) in message and "0" * 32 in message
    _refuses(tmp_path / "b", path, InputError, "32 hexadecimal", expected_md5="abc")


def test_missing_file_and_bad_outputs(tmp_path):
    _refuses(tmp_path, tmp_path / "nope.pt", ModelError, "checkpoint not found")
    _refuses(
        tmp_path / "b",
        _zeros_state_dict(),
        TractogramError,
        "reference",
        reference=str(tmp_path / "missing.nii.gz"),
    )
    with pytest.raises(InputError, match=r"\.keras"):
        convert_finta_checkpoint(_zeros_state_dict(), tmp_path / "m.h5")
    with pytest.raises(InputError, match="md5 applies to a checkpoint file"):
        convert_finta_checkpoint(
            _zeros_state_dict(), tmp_path / "m.keras", expected_md5="0" * 32
        )
    with pytest.raises(InputError, match="unique"):
        convert_finta_checkpoint(
            _zeros_state_dict(), tmp_path / "m.keras", bundle_names=["a", "a"]
        )
    existing = tmp_path / "old.keras"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="old.keras"):
        convert_finta_checkpoint(_zeros_state_dict(), existing)
    assert existing.read_bytes() == b"keep me"


def test_torch_missing_is_explained(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    path.write_bytes(b"PK")
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch -> ImportError
    message = _refuses(tmp_path, path, TorchUnavailableError, "needs PyTorch")
    assert "pip install" in message


def test_read_bundle_names(tmp_path):
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({"CST_R.trk": 2, "AF_L.trk": 1, "OR_L": 3}))
    assert read_bundle_names(path) == ["AF_L", "CST_R", "OR_L"]
    path.write_text(json.dumps({"AF_L": [1, 2], "CC": {"x": 1}}))
    assert read_bundle_names(path) == ["AF_L", "CC"]
    path.write_text(json.dumps(["AF_L", "CST_R"]))
    assert read_bundle_names(path) == ["AF_L", "CST_R"]
    path.write_text(json.dumps(3))
    with pytest.raises(InputError, match="no bundle names"):
        read_bundle_names(path)
    path.write_text("{")
    with pytest.raises(InputError, match="cannot read bundle names"):
        read_bundle_names(path)


# --- the command -----------------------------------------------------------------


def test_docstring_parses():
    from dipy.workflows.base import IntrospectiveArgumentParser

    from dipy_tractogen.workflows.cli import _NEEDS_KERAS, COMMANDS
    from dipy_tractogen.workflows.convert import ConvertFintaWeightsFlow

    flow = ConvertFintaWeightsFlow()
    assert flow.get_short_name() == "convert_finta_weights"
    parser = IntrospectiveArgumentParser()
    parser.add_workflow(flow)
    assert [p[0] for p in parser.positional_parameters] == ["checkpoint"]
    assert [p[0] for p in parser.output_parameters] == ["out_dir", "out_model"]
    assert COMMANDS[CMD][1] == "ConvertFintaWeightsFlow" and CMD in _NEEDS_KERAS


@needs_torch
def test_command_end_to_end(
    cli_error, run_cli, checkpoint, tmp_path, monkeypatch, capsys
):
    import nibabel as nib

    from dipy_tractogen.models.convert import file_md5
    from dipy_tractogen.models.files import load_model

    affine, dims, _, _ = _space()
    ref = tmp_path / "mni.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros(dims, np.float32), affine), ref)
    out_dir = tmp_path / "out"
    args = [checkpoint, "--reference", ref, "--bundle_names", "arch,uturn"]
    args += ["--md5", file_md5(checkpoint), "--out_dir", out_dir]
    assert run_cli(CMD, *args) == 0
    assert _listing(out_dir) == [
        "finta_published.card.json",
        "finta_published.card.md",
        "finta_published.keras",
    ]
    model = load_model(out_dir / "finta_published.keras")
    assert model.card["bundle_names"] == NAMES
    assert model.card["reference"]["file"] == "mni.nii.gz"
    np.testing.assert_allclose(model.seed_bank["affine"], affine)
    before = (out_dir / "finta_published.keras").read_bytes()

    capsys.readouterr()
    assert run_cli(CMD, *args) == 1  # exists, no --force
    assert "output exists" in cli_error(CMD)
    assert (out_dir / "finta_published.keras").read_bytes() == before

    bad = [checkpoint, "--md5", "f" * 32, "--out_dir", tmp_path / "bad"]
    assert run_cli(CMD, *bad) == 1
    assert "md5 mismatch" in cli_error(CMD)
    assert not (tmp_path / "bad").exists() or _listing(tmp_path / "bad") == []


def test_command_published_needs_fetch(
    cli_error, run_cli, tmp_path, monkeypatch, capsys
):
    monkeypatch.setenv("DIPY_HOME", str(tmp_path / "home"))
    out_dir = tmp_path / "out"
    assert run_cli(CMD, "published", "--out_dir", out_dir) == 1
    line = cli_error(CMD)
    assert "no published checkpoint" in line and "--fetch" in line
    assert not out_dir.exists() or _listing(out_dir) == []


@needs_torch
def test_command_fetch_uses_downloaded_files(
    run_cli, checkpoint, tmp_path, monkeypatch
):
    """--fetch then 'published': the downloaded checkpoint, reference and
    labels are used (fetch_data is replaced by a local copy)."""
    import shutil

    import dipy.data.fetcher
    import nibabel as nib

    from dipy_tractogen.models import fetcher
    from dipy_tractogen.models.convert import file_md5
    from dipy_tractogen.models.files import load_model

    affine, dims, _, _ = _space()
    calls = []

    def fake_fetch(files, folder, **kwargs):
        calls.append((dict(files), folder))
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(checkpoint, folder / fetcher.FINTA_CHECKPOINT)
        nib.save(
            nib.Nifti1Image(np.zeros(dims, np.float32), affine),
            folder / fetcher.FINTA_REFERENCE,
        )
        (folder / fetcher.FINTA_BUNDLE_LABELS).write_text(
            json.dumps({"uturn": 2, "arch": 1})
        )

    monkeypatch.setenv("DIPY_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(dipy.data.fetcher, "fetch_data", fake_fetch)
    # the test checkpoint is not the published file: give its md5
    seeds = _one_bundle_files(tmp_path, ("uturn", "arch"), count=3)
    args = ["published", "--fetch", "--md5", file_md5(checkpoint), "--seeds", *seeds]
    assert run_cli(CMD, *args, "--out_dir", tmp_path / "out") == 0
    assert len(calls) == 1
    assert calls[0][1] == str(tmp_path / "home" / "tractogen_finta")
    model = load_model(tmp_path / "out" / "finta_published.keras")
    assert model.card["bundle_names"] == NAMES
    assert model.card["reference"]["file"] == fetcher.FINTA_REFERENCE
    assert tuple(model.seed_bank["dimensions"]) == tuple(dims)
    # labels follow the downloaded label table's names, not the file order
    assert np.bincount(model.seed_bank["labels"]).tolist() == [6, 6]
    assert model.card["seeds"]["files"] == ["uturn.trk", "arch.trk"]
