"""Proof on real human streamlines (issue #13): DIPY's fornix and cingula.

The fast tests check the pieces of ``bench/bench_real_data.py`` (the split,
the files it writes, the generation scores) and that a short training on the
fornix runs through the command; the full proofs, which train for minutes,
are marked slow and assert the thresholds of the issue's "Done means".
"""

import json

import numpy as np
import pytest
from conftest import load_bench_script


@pytest.fixture(scope="module")
def bench():
    return load_bench_script("bench_real_data")


def test_fornix_split_is_fixed_disjoint_and_80_20(bench):
    train, test = bench.fornix_split(300, seed=0)
    again = bench.fornix_split(300, seed=0)
    assert np.array_equal(train, again[0]) and np.array_equal(test, again[1])
    assert (len(train), len(test)) == (240, 60)
    assert not set(train) & set(test)
    assert set(train) | set(test) == set(range(300))
    other = bench.fornix_split(300, seed=1)[1]
    assert not np.array_equal(test, other)


def test_fornix_split_files_keep_the_header_the_points_leave(bench, tmp_path):
    from dipy.io.streamline import load_tractogram

    from dipy_tractogen.errors import TractogramError
    from dipy_tractogen.io.tractograms import load_bundles, outside_volume

    train_path, test_path = bench.write_fornix_split(tmp_path)
    fornix = bench.load_fornix()
    _, test = bench.fornix_split(len(fornix), seed=0)
    sft, ids, names, meta = load_bundles(test_path, bbox_valid_check=False)
    assert names == {0: "fornix"} and len(sft) == 60
    assert meta["indices"] == test.tolist()
    expected = [fornix.streamlines[i] for i in test]
    for a, b in zip(sft.streamlines, expected, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-4)
    # the fornix's own 50 mm cube: DIPY's check refuses the file
    assert np.array_equal(sft.affine, fornix.affine)
    assert outside_volume(sft).any()
    with pytest.raises(TractogramError, match="bounding box"):
        load_bundles(train_path)
    sft = load_tractogram(str(train_path), "same", bbox_valid_check=False)
    assert len(sft) == 240


def test_native_cingula_hold_their_points(bench, tmp_path):
    from dipy.data import two_cingulum_bundles

    from dipy_tractogen.io.tractograms import load_bundles

    paths = bench.write_native_cingula(tmp_path)
    assert [p.name for p in paths] == ["sub-01_cingulum.trk", "sub-02_cingulum.trk"]
    for path, bundle in zip(paths, two_cingulum_bundles(), strict=True):
        sft, _, names, _ = load_bundles(path)  # DIPY's bounding-box check passes
        assert names == {0: "cingulum"} and len(sft) == len(bundle)
        np.testing.assert_allclose(
            sft.streamlines.get_data(), np.concatenate(bundle), atol=1e-4
        )


def test_generation_metrics_of_the_real_subjects(bench):
    """A subject scored as 'generated' against both: every number is known."""
    from dipy.data import two_cingulum_bundles
    from dipy.tracking.streamline import length

    c1, c2 = (list(b) for b in two_cingulum_bundles())
    scores = bench.generation_metrics(c1, [c1, c2])
    assert scores["plausibility"] == 1.0 and scores["coverage"] < 1.0
    assert scores["buan"][0] == 1.0  # identical to sub-01
    assert scores["buan"][1] == pytest.approx(scores["buan_between_subjects"])
    real = np.mean(list(length(c1 + c2)))
    assert scores["mean_length_real"] == pytest.approx(real)
    assert scores["length_ratio"] == pytest.approx(np.mean(list(length(c1))) / real)


def test_command_line_runs_a_command_installed_or_not(bench):
    import subprocess

    argv = bench.command_line("dipy_train_tractoencoder", "--help")
    proc = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert proc.returncode == 0 and "--valid_fraction" in proc.stdout


def test_tiny_fornix_training_through_the_command(bench, tmp_path):
    """Two epochs on the fornix's 80 % through ``dipy_train_tractoencoder``:
    the out-of-volume header is accepted and counted, the model reconstructs
    the held-out 20 % in mm."""
    pytest.importorskip("keras")
    train_path, test_path = bench.write_fornix_split(tmp_path / "data")
    options = "--valid_fraction 0 --batch_size 64 --epochs 2 --n_points 64 "
    options += "--latent_dim 8 --no_report"
    model, timing = bench.train([train_path], tmp_path / "model", options)
    card = json.loads(model.with_suffix(".card.json").read_text())
    files = card["training_data"]["files"]
    assert files[0]["n_outside_volume"] > 0
    assert card["training_data"]["n_train"] == 240
    errors = bench.reconstruction(model, test_path)
    assert errors["n_streamlines"] == 60
    assert np.isfinite(errors["mdf_mean_mm"]) and errors["mdf_mean_mm"] > 0
    assert timing["wall_s"] > 0 and timing["cpu_s"] > 0


@pytest.mark.slow
def test_fornix_proof(bench, tmp_path):
    """Done means: trained with the command on 80 % of the fornix, MDF mean
    <= 1.0 mm on the other 20 %."""
    pytest.importorskip("keras")
    result = bench.fornix_proof(tmp_path)
    errors = result["heldout"]
    assert errors["n_streamlines"] == 60
    assert errors["mdf_mean_mm"] <= bench.DONE["fornix_mdf_mean_mm"], errors


@pytest.fixture(scope="module")
def cingulum_proof(bench, tmp_path_factory):
    """``bench_real_data.cingulum_proof``: about 20 minutes on 2 cores."""
    pytest.importorskip("keras")
    return bench.cingulum_proof(tmp_path_factory.mktemp("cingula"))


@pytest.mark.slow
def test_cingulum_proof(bench, cingulum_proof):
    """Done means: alignment brings sub-02 closer to sub-01; generation from
    both aligned cingula: plausibility and coverage at 5 mm, BUAN to each
    subject at least theirs to each other, mean length within 5 %."""
    (row,) = cingulum_proof["alignment"]["qc"]["rows"]
    assert row["bmd_after"] < row["bmd_before"]
    assert row["buan_after"] > row["buan_before"]
    cross = cingulum_proof["cross_subject"]["heldout"]
    assert np.isfinite(cross["mdf_mean_mm"])  # reported, whatever it is
    s = cingulum_proof["generation"]["scores"]
    assert s["plausibility"] >= bench.DONE["plausibility_5mm"], s
    assert s["coverage"] >= bench.DONE["coverage_5mm"], s
    assert min(s["buan"]) >= s["buan_between_subjects"], s
    assert abs(s["length_ratio"] - 1) <= bench.DONE["length_tolerance"], s
