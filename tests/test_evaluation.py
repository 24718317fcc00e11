"""File-level evaluation: phantom vs itself, shifted copies, matching, errors."""

import json

import numpy as np
import pytest

from dipy_tractogen.errors import InputError, OutputExistsError, TractogramError
from dipy_tractogen.evaluation.evaluate import evaluate_tractogram, write_evaluation
from dipy_tractogen.io.tractograms import save_bundles

# a 2 mm grid of 50 x 50 x 5 voxels, origin at (0, 0, 0)
REF = (np.diag([2.0, 2.0, 2.0, 1.0]), (50, 50, 5), (2.0, 2.0, 2.0), "RAS")


def _lines(xs, shift=0.0):
    """Straight lines along y (10 to 90 mm, 1 mm steps) at x = xs, z = 4."""
    y = np.arange(10.0, 91.0)
    return [
        np.stack([np.full_like(y, x + shift), y, np.full_like(y, 4.0)], 1).astype(
            np.float32
        )
        for x in xs
    ]


def _write_lines(path, shift=0.0, names=("a", "b"), reference=REF):
    xs = [10, 30, 50, 70]
    save_bundles(
        path,
        _lines(xs, shift),
        reference,
        bundle_ids=[0, 0, 1, 1],
        bundle_names=list(names),
    )
    return str(path)


@pytest.fixture(scope="module")
def phantom_file(tmp_path_factory):
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=5, seed=2)
    path = tmp_path_factory.mktemp("ph") / "phantom.trx"
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    save_bundles(
        path,
        ph.streamlines,
        ref,
        bundle_ids=ph.bundle_ids,
        bundle_names=list(ph.bundle_names),
    )
    return str(path), ph


def test_phantom_against_itself(phantom_file):
    path, ph = phantom_file
    report = evaluate_tractogram(path, path, n_points=32)
    assert list(report["bundles"]) == list(ph.bundle_names)
    for entry in report["bundles"].values():
        assert entry["plausibility"] == 1.0 and entry["coverage"] == 1.0
        assert entry["novelty"] == 0.0 and entry["mdf_to_real_median"] == 0.0
        assert entry["density"]["dice"] == 1.0 and entry["density"]["ORn"] == 0.0
        assert entry["buan"] == 1.0 and entry["mean_length_ratio"] == 1.0
    overall = report["overall"]
    assert overall["n_generated"] == overall["n_real"] == len(ph.bundle_ids)
    assert overall["plausibility"] == overall["coverage"] == overall["dice_mean"] == 1
    assert overall["novelty"] == 0.0
    inputs = report["inputs"]
    assert inputs["novelty_against"] == "real" and inputs["train"] is None
    assert inputs["generated"]["n_evaluated"] == len(ph.bundle_ids)
    assert report["settings"]["n_points"] == 32


def test_shifted_copy_gives_mdf_values(tmp_path):
    real = _write_lines(tmp_path / "real.trx")
    gen = _write_lines(tmp_path / "gen.trk", shift=2.0)  # one voxel along x
    report = evaluate_tractogram(gen, real, n_points=16)
    for entry in report["bundles"].values():
        assert entry["mdf_to_real_median"] == pytest.approx(2.0, abs=1e-4)
        assert entry["plausibility"] == 1.0 and entry["coverage"] == 1.0
        assert entry["novelty"] == 1.0  # 2 mm > 0.5 mm from every real one
        assert entry["density"]["dice"] == 0.0 and entry["density"]["OL"] == 0.0
        assert entry["density"]["ORn"] == 1.0
        assert entry["mean_length_ratio"] == pytest.approx(1.0)
        assert entry["length_wasserstein"] == pytest.approx(0.0, abs=1e-4)
    strict = evaluate_tractogram(gen, real, plausibility_mm=1.5, coverage_mm=1.9)
    assert strict["overall"]["plausibility"] == 0.0
    assert strict["overall"]["coverage"] == 0.0
    loose = evaluate_tractogram(gen, real, novelty_mm=2.5)
    assert loose["overall"]["novelty"] == 0.0


def test_novelty_against_train_and_partial_names(tmp_path):
    real = _write_lines(tmp_path / "real.trx", names=("a", "b"))
    gen = _write_lines(tmp_path / "gen.trx", shift=2.0, names=("a", "c"))
    train = _write_lines(tmp_path / "train.trx", shift=2.0, names=("a", "b"))
    report = evaluate_tractogram(gen, real, train=train)
    assert report["inputs"]["novelty_against"] == "train"
    assert report["bundles"]["a"]["novelty"] == 0.0  # gen "a" copies train "a"
    assert report["bundles"]["c"]["novelty"] is None  # train has no "c"
    assert report["inputs"]["only_generated"] == ["c"]
    assert report["inputs"]["only_real"] == ["b"]
    assert report["bundles"]["b"]["n_generated"] == 0
    assert report["bundles"]["b"]["coverage"] == 0.0


def test_max_streamlines_is_deterministic(phantom_file):
    path, ph = phantom_file
    one = evaluate_tractogram(path, path, max_streamlines=2, seed=4, buan=False)
    two = evaluate_tractogram(path, path, max_streamlines=2, seed=4, buan=False)
    assert one == two
    assert all(e["n_generated"] == 2 for e in one["bundles"].values())
    assert one["inputs"]["real"]["n_evaluated"] == 2 * len(ph.bundle_names)
    assert one["inputs"]["real"]["n_streamlines"] == len(ph.bundle_ids)


def test_generated_files_are_matched_by_name(phantom_file, tmp_path):
    """Tractograms written by the streaming writer (as generation writes them)."""
    from dipy_tractogen.io.streaming import TractogramStreamWriter

    path, ph = phantom_file
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    for ext in (".trx", ".tck"):
        out = tmp_path / f"gen_{ext[1:]}{ext}"
        with TractogramStreamWriter(
            out,
            ref,
            data_per_streamline={"bundle": "int16"},
            group_names=list(ph.bundle_names),
            group_by="bundle",
        ) as w:
            w.write(ph.streamlines[:10], bundle=ph.bundle_ids[:10])
            w.write(ph.streamlines[10:], bundle=ph.bundle_ids[10:])
        reference = ph.reference_image() if ext == ".tck" else None
        report = evaluate_tractogram(
            out, path, reference=reference, n_points=16, buan=False
        )
        assert report["overall"]["plausibility"] == 1.0, ext
        assert report["overall"]["coverage"] == 1.0, ext
        assert report["inputs"]["only_generated"] == []


def test_single_bundle_files_pair_whatever_their_names(tmp_path):
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    for name, shift in (("uturn", 0.0), ("mine", 1.0)):  # no bundle information
        sft = StatefulTractogram(_lines([10, 30], shift), REF, Space.RASMM)
        save_tractogram(sft, str(tmp_path / f"{name}.trk"))
    report = evaluate_tractogram(tmp_path / "mine.trk", tmp_path / "uturn.trk")
    assert list(report["bundles"]) == ["uturn"]
    assert report["overall"]["plausibility"] == 1.0
    assert report["bundles"]["uturn"]["mdf_to_real_median"] == pytest.approx(1.0)


def test_bad_inputs(tmp_path, phantom_file):
    import nibabel as nib

    path, _ = phantom_file
    real = _write_lines(tmp_path / "real.trx")
    other = _write_lines(tmp_path / "other.trx", names=("x", "y"))
    with pytest.raises(InputError, match="no common bundle name.*x, y"):
        evaluate_tractogram(other, real)
    with pytest.raises(TractogramError, match="not found: .*nope.trx"):
        evaluate_tractogram(tmp_path / "nope.trx", real)
    with pytest.raises(TractogramError, match="not found"):
        evaluate_tractogram(real, real, train=tmp_path / "nope.trk")
    # different spaces
    with pytest.raises(InputError, match="not in the space of"):
        evaluate_tractogram(path, real)
    # a reference that does not match the files
    img = tmp_path / "ref.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4)), img)
    with pytest.raises(TractogramError, match="does not match"):
        evaluate_tractogram(real, real, reference=img)
    with pytest.raises(InputError, match="max_streamlines"):
        evaluate_tractogram(real, real, max_streamlines=0)
    with pytest.raises(InputError, match="plausibility_mm"):
        evaluate_tractogram(real, real, plausibility_mm=-1)


def test_write_evaluation(tmp_path):
    real = _write_lines(tmp_path / "real.trx")
    report = evaluate_tractogram(real, real, buan=False)
    out, table_path = tmp_path / "ev.json", tmp_path / "ev.txt"
    table = write_evaluation(report, out, table_path)
    assert json.loads(out.read_text()) == report
    text = table_path.read_text()
    assert text.strip() == table.strip()
    assert "overall" in text and "\na " in text and "novelty against: real" in text
    table_path.write_text("precious")
    out.unlink()
    with pytest.raises(OutputExistsError):
        write_evaluation(report, out, table_path)
    assert not out.exists() and table_path.read_text() == "precious"
    write_evaluation(report, out, table_path, force=True)
    assert table_path.read_text() != "precious"


def test_write_evaluation_html(tmp_path, monkeypatch):
    import dipy_tractogen.evaluation.evaluate
    from dipy_tractogen.viz.report import read_report_numbers

    real = _write_lines(tmp_path / "real.trx")
    report = evaluate_tractogram(real, real, buan=False)
    page = tmp_path / "ev.html"
    write_evaluation(report, tmp_path / "ev.json", None, page)
    text = page.read_text()
    assert "Per bundle" in text and "<td>a</td>" in text
    assert read_report_numbers(page)[0]["overall"] == report["overall"]

    def broken(*args, **kwargs):
        raise InputError("broken page")

    # a failure while writing the page leaves no JSON or table behind
    monkeypatch.setattr(dipy_tractogen.evaluation.evaluate, "write_html_report", broken)
    with pytest.raises(InputError, match="broken page"):
        write_evaluation(
            report, tmp_path / "x.json", tmp_path / "x.txt", page, force=True
        )
    assert not any(p.name.startswith(("x", ".x")) for p in tmp_path.iterdir())
    assert page.read_text() == text
