"""Streamlines outside their volume: accepted where no volume is needed
(training, dataset building), cut or removed where one is (generation's
output), and generation back in a subject's native space."""

import json

import numpy as np
import pytest
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.io.streamline import load_tractogram

from dipy_tractogen.errors import TractogramError
from dipy_tractogen.io.tractograms import (
    cut_to_volume,
    load_tractogram_checked,
    outside_volume,
    save_bundles,
    volume_holding,
)

#: native -> template of subject 2's cingulum: 8 degrees about z and a shift
#: that lays it over subject 1's, a third of its streamlines out of the volume
_ANGLE = np.radians(8.0)
MOVE = np.array(
    [
        [np.cos(_ANGLE), -np.sin(_ANGLE), 0.0, 1.0],
        [np.sin(_ANGLE), np.cos(_ANGLE), 0.0, -6.0],
        [0.0, 0.0, 1.0, -20.0],
        [0.0, 0.0, 0.0, 1.0],
    ]
)


def _dipy_outside(sft):
    """Streamlines DIPY itself finds outside (on a copy: its check moves the
    tractogram in place)."""
    copy = StatefulTractogram.from_sft(sft.streamlines.copy(), sft)
    removed, _ = copy.remove_invalid_streamlines(epsilon=0.0)
    return len(removed)


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """Two subjects' real cingula in a template space: subject 1's bundle and
    its header (a volume holding it), subject 2's bundle moved by an affine
    and saved with subject 1's header, which it partly leaves."""
    from dipy.data import two_cingulum_bundles
    from dipy.tracking.streamline import transform_streamlines

    folder = tmp_path_factory.mktemp("registered")
    cb1, cb2 = two_cingulum_bundles()
    header = volume_holding(cb1, margin=1.0)
    moved = transform_streamlines(cb2, MOVE)
    paths = {}
    for sub, lines in (("sub-01", cb1), ("sub-02", moved)):
        path = folder / f"{sub}_cingulum.trx"
        save_bundles(
            path, lines, header, bundle_names=["cingulum"], bbox_valid_check=False
        )
        paths[sub] = path
    sft = load_tractogram(str(paths["sub-02"]), "same", bbox_valid_check=False)
    n_out = _dipy_outside(sft)
    assert 0 < n_out < len(moved)  # partly outside: the case to handle
    return {"paths": paths, "header": header, "n_outside": n_out, "n": len(moved)}


def test_outside_volume_counts_as_dipy(registered):
    sft = load_tractogram(
        str(registered["paths"]["sub-02"]), "same", bbox_valid_check=False
    )
    before = sft.streamlines.get_data().copy()
    assert int(outside_volume(sft).sum()) == registered["n_outside"]
    np.testing.assert_array_equal(sft.streamlines.get_data(), before)  # read-only
    assert not outside_volume(
        load_tractogram(
            str(registered["paths"]["sub-01"]), "same", bbox_valid_check=False
        )
    ).any()
    # the package's loader still refuses it when asked to check
    with pytest.raises(TractogramError, match="outside the bounding box"):
        load_tractogram_checked(registered["paths"]["sub-02"])


def test_dataset_building_accepts_and_counts(registered, tmp_path, dipy_log):
    from dipy_tractogen.io.dataset import StreamlineDataset, build_dataset

    files = [registered["paths"][s] for s in ("sub-01", "sub-02")]
    out = build_dataset(files, tmp_path / "cingula.h5", n_points=24)
    with StreamlineDataset(out) as ds:
        assert len(ds) == 116 + registered["n"]
        assert int(ds.h5.attrs["n_outside_volume"]) == registered["n_outside"]
    text = dipy_log.text
    assert (
        f"{registered['n_outside']} of {registered['n']} streamlines of "
        f"{files[1]} leave the volume of its header" in text
    )
    assert "kept: a dataset needs no volume" in text


def test_dataset_command_bbox_check_refuses(registered, tmp_path, run_cli, cli_error):
    cmd = "dipy_build_streamline_dataset"
    files = [registered["paths"][s] for s in ("sub-01", "sub-02")]
    out = tmp_path / "out"
    args = [*files, "--n_points", 24, "--out_dir", out]
    assert run_cli(cmd, *args, "--bbox_check") == 1
    assert "outside the bounding box" in cli_error(cmd)
    assert not out.exists() or list(out.iterdir()) == []
    assert run_cli(cmd, *args) == 0
    assert (out / "streamlines.h5").is_file()


def test_fornix_accepted_by_training_data(dipy_log):
    pytest.importorskip("keras")
    from dipy.data import get_fnames

    from dipy_tractogen.training.data import load_training_data

    fornix = get_fnames(name="fornix")
    expected = _dipy_outside(load_tractogram(fornix, "same", bbox_valid_check=False))
    assert expected > 0  # the fornix leaves its own header's volume
    data = load_training_data([fornix], n_points=16, valid_fraction=0.2)
    assert data.summary["n_streamlines"] == 300
    assert data.summary["files"][0]["n_outside_volume"] == expected
    assert f"{expected} of 300 streamlines of {fornix}" in dipy_log.text


@pytest.mark.slow  # trains (about 20 s on 2 cores)
@pytest.mark.parametrize("name", ["dipy_train_tractoencoder"])
def test_training_command_accepts_registered_bundles(
    name, registered, tmp_path, run_cli, monkeypatch, capsys
):
    pytest.importorskip("keras")
    from dipy_tractogen.training import trainer

    monkeypatch.setattr(trainer, "_resolve_jit", lambda jit: False)
    files = [registered["paths"][s] for s in ("sub-01", "sub-02")]
    args = [*files, "--epochs", 1, "--batch_size", 32, "--latent_dim", 4]
    args += ["--n_points", 64, "--no_report", "--out_dir", tmp_path]
    assert run_cli(name, *args) == 0
    card = json.loads((tmp_path / "model.card.json").read_text())
    files_info = card["training_data"]["files"]
    assert [f["n_outside_volume"] for f in files_info] == [0, registered["n_outside"]]
    said = capsys.readouterr()
    assert f"{registered['n_outside']} of {registered['n']} streamlines of " in (
        said.out + said.err
    )
    assert "kept: training needs no volume" in said.out + said.err


# ---------------------------------------------------------------------------
# cutting and removing at the faces of a volume
# ---------------------------------------------------------------------------


def _box_case():
    """A 10^3 volume of 1 mm voxels spanning [-0.5, 9.5] mm, and streamlines
    whose fate is known: inside, crossing both faces, outside, leaving and
    coming back (the longer piece is the second)."""
    ref = (np.eye(4), np.array([10, 10, 10]), np.ones(3, np.float32), "RAS")
    x = np.linspace(-3.0, 12.0, 16)
    through = np.stack([x, np.full(16, 5.0), np.full(16, 5.0)], axis=1)
    inside = np.stack([np.linspace(1, 8, 8), np.full(8, 5.0), np.full(8, 5.0)], 1)
    away = inside + 30.0
    back = np.array(
        [[1, 5, 5], [3, 5, 5], [12, 5, 5], [12, 6, 5], [2, 6, 5], [0, 6, 5], [0, 7, 5]],
        dtype=float,
    )
    return ref, [through, inside, away, back]


def test_cut_to_volume_known_answer():
    ref, lines = _box_case()
    assert outside_volume(lines, ref).tolist() == [True, False, True, True]
    pieces, cut, keep = cut_to_volume(lines, ref)
    assert cut.tolist() == [True, False, False, True]
    assert keep.tolist() == [True, True, False, True]
    through, inside, back = pieces
    # cut at the faces (1e-3 voxel inside), every inside point kept
    np.testing.assert_allclose(through[[0, -1], 0], [-0.498, 9.498])
    np.testing.assert_array_equal(through[1:-1], lines[0][3:13])
    np.testing.assert_array_equal(inside, lines[1])
    np.testing.assert_allclose(
        back, [[9.498, 6, 5], [2, 6, 5], [0, 6, 5], [0, 7, 5]], atol=1e-9
    )
    sft = StatefulTractogram([p.astype(np.float32) for p in pieces], ref, Space.RASMM)
    assert sft.is_bbox_in_vox_valid()


# ---------------------------------------------------------------------------
# generation: the output's volume, cut or remove, a subject's native space
# ---------------------------------------------------------------------------

GEN = "dipy_generate_tractogram"
N_GEN = 120


def _box(x_half):
    """A 1 mm grid spanning x in [-x_half, x_half] mm, and the phantom's y
    and z (the shipped model's space spans x and y in [-96, 96] mm)."""
    affine = np.eye(4)
    affine[:3, 3] = (-x_half, -100.0, -5.0)
    return (affine, np.array([2 * x_half + 1, 200, 10]), np.ones(3, np.float32), "RAS")


def _transform(tmp_path, native, matrix=None, name="sub-09"):
    """A transform record of subject ``name`` into the shipped model's space."""
    from dipy_tractogen.io.transforms import (
        SubjectTransform,
        reference_record,
        write_subject_transform,
    )
    from dipy_tractogen.models.files import resolve_model
    from dipy_tractogen.models.seed_bank import model_reference

    record = SubjectTransform(
        subject=name,
        matrix=np.eye(4) if matrix is None else matrix,
        native_reference=reference_record(native),
        template_reference=reference_record(model_reference(resolve_model(None))),
    )
    path, _ = write_subject_transform(tmp_path / f"{name}_transform.json", record)
    return path


def _trx_valid(path, tmp_path):
    """Streamlines trx-python's ``trx_validate`` keeps (it removes invalid
    coordinates, overlapping points and duplicates, and writes the rest)."""
    from trx.workflows import validate_tractogram

    cleaned = tmp_path / f"validated_{path.name}"
    validate_tractogram(str(path), None, str(cleaned))
    return len(load_tractogram(str(cleaned), "same", bbox_valid_check=False))


@pytest.fixture(scope="module")
def template_run(tmp_path_factory):
    """The shipped model's plain run (its own space, no plausibility filter):
    what the other runs of the same seed are compared with."""
    pytest.importorskip("keras")
    from dipy_tractogen.generation.pipeline import generate_tractogram

    folder = tmp_path_factory.mktemp("template_run")
    path = folder / "template.trx"
    report = generate_tractogram(path, n_streamlines=N_GEN, seed=1, apply_filters=False)
    assert report.complete and report.out_of_volume["removed"] == 0
    sft = load_tractogram(str(path), "same", bbox_valid_check=True)
    return [np.asarray(s, np.float64) for s in sft.streamlines]


def test_generation_cut_known_answer(template_run, tmp_path):
    """Cut to a box every streamline keeps a piece of: the same draws as the
    template run, each cut exactly as cut_to_volume cuts it."""
    from dipy_tractogen.generation.pipeline import generate_tractogram

    box = _box(40)
    pieces, cut, keep = cut_to_volume(template_run, box)
    assert keep.all() and 0 < cut.sum() < N_GEN
    out = tmp_path / "cut.trk"
    report = generate_tractogram(
        out,
        n_streamlines=N_GEN,
        seed=1,
        apply_filters=False,
        out_of_volume="cut",
        subject_transform=_transform(tmp_path, box),
    )
    assert report.out_of_volume["cut"] == int(cut.sum())
    assert report.out_of_volume["removed"] == 0
    sft = load_tractogram(str(out), "same", bbox_valid_check=True)
    assert len(sft) == N_GEN
    for got, want in zip(sft.streamlines, pieces, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-3)
    meta = json.loads(out.with_suffix(".json").read_text())["metadata"]
    assert meta["output_volume"]["out_of_volume"] == "cut"
    assert meta["report"]["out_of_volume"]["cut"] == int(cut.sum())
    assert _trx_valid(out, tmp_path) == N_GEN


def test_generation_remove(template_run, tmp_path):
    """Removed streamlines are replaced by new draws, all inside; the
    template run's streamlines that fit are among them."""
    from dipy_tractogen.generation.pipeline import generate_tractogram

    box = _box(60)
    outside = outside_volume(template_run, box, epsilon=2e-3)
    assert 0 < outside.sum() < N_GEN
    out = tmp_path / "removed.trx"
    report = generate_tractogram(
        out,
        n_streamlines=N_GEN,
        seed=1,
        apply_filters=False,
        subject_transform=_transform(tmp_path, box),
    )
    assert report.complete
    removed = report.out_of_volume["removed"]
    assert removed == report.rejected["in_volume"] >= outside.sum()
    assert report.out_of_volume["cut"] == 0
    sft = load_tractogram(str(out), "same", bbox_valid_check=True)
    assert len(sft) == N_GEN
    # every template streamline that fits is written (same draws, same order
    # within a bundle), to float32 precision
    got = np.stack([np.asarray(s) for s in sft.streamlines])
    fits = np.stack([s for s, o in zip(template_run, outside, strict=True) if not o])
    nearest = np.abs(fits[:, None] - got[None]).max(axis=(2, 3)).min(axis=1)
    assert nearest.max() < 1e-3
    assert _trx_valid(out, tmp_path) == N_GEN
    assert "removed" in report.summary() and "sub-09's native space" in report.summary()


def test_native_space_round_trip(template_run, tmp_path, run_cli):
    """--subject_transform writes the template run moved by the inverse of
    the subject's transform, with the subject's header."""
    from dipy.tracking.streamline import transform_streamlines

    from dipy_tractogen.io.tractograms import same_space

    native = transform_streamlines(template_run, np.linalg.inv(MOVE))
    header = volume_holding(native, margin=10.0)
    transform = _transform(tmp_path, header, matrix=MOVE)
    out = tmp_path / "out"
    args = ["--n_streamlines", N_GEN, "--seed", 1, "--no_filter", "--no_snapshot"]
    assert run_cli(GEN, *args, "--subject_transform", transform, "--out_dir", out) == 0
    sft = load_tractogram(str(out / "generated.trx"), "same", bbox_valid_check=True)
    assert same_space(sft.space_attributes, header)
    assert len(sft) == N_GEN
    error = max(
        np.abs(np.asarray(a) - b).max()
        for a, b in zip(sft.streamlines, native, strict=True)
    )
    assert error < 0.01
    meta = json.loads((out / "generated.json").read_text())["metadata"]
    entry = meta["output_volume"]
    assert entry["source"] == "subject" and entry["subject"] == "sub-09"
    np.testing.assert_allclose(entry["matrix_native_to_template"], MOVE)
    np.testing.assert_allclose(entry["matrix_template_to_native"], np.linalg.inv(MOVE))
    html = (out / "generated.html").read_text()
    assert "sub-09&#x27;s native space" in html or "sub-09's native space" in html


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--subject_transform", "missing.json", "transform not found"),
        ("--subject_transform", "corrupt.json", "cannot read transform"),
        ("--subject_transform", "other.json", "not a transform record"),
        ("--reference", "corrupt.json", "invalid reference"),
        ("--reference", "missing.nii.gz", "reference image not found"),
        ("--outside_volume", "clip", "--outside_volume must be remove or cut"),
    ],
)
def test_generation_bad_volume_input(
    option, value, message, tmp_path, run_cli, cli_error
):
    (tmp_path / "corrupt.json").write_text("{not json")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    if value.endswith(".json") or value.endswith(".nii.gz"):
        value = tmp_path / value
    out = tmp_path / "out"
    assert run_cli(GEN, option, value, "--n_streamlines", 10, "--out_dir", out) == 1
    error = cli_error(GEN)
    assert message in error, error
    assert not out.exists() or list(out.iterdir()) == []


def test_output_volume_built_when_nothing_gives_one():
    from types import SimpleNamespace

    from dipy_tractogen.generation.pipeline import output_volume

    volume = output_volume(SimpleNamespace(seed_bank={}))
    assert volume.source == "built" and volume.space is None
    assert volume.grid() is None
    assert volume.provenance("remove") == {
        "source": "built",
        "description": "built to hold the streamlines",
    }
