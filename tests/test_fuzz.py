"""The commands fed malformed inputs (issue #16): bench/fuzz_commands.py.

A quick seeded slice runs with every test run (12 cases, no model file, no
Keras); the full run (seed 0, 240 cases, model files, training, generation)
is marked slow. Every case must end in status 0 or 1 (2 for a usage error)
with no traceback, one ``COMMAND: error:`` line on failure and nothing left
in its output folder but its declared outputs.
"""

import numpy as np
import pytest
from conftest import load_bench_script


def _fuzzer():
    return load_bench_script("fuzz_commands")


def _failures(results):
    return [
        f"case {r['case']} ({r['family']}: {r['what']}): {r['problems']}\n"
        f"  {r['command']}\n{r['stderr_tail'][-800:]}"
        for r in results
        if r["problems"]
    ]


def test_plan_is_seeded(tmp_path):
    fuzz = _fuzzer()
    inputs = fuzz.build_inputs(tmp_path, model=False)
    first = fuzz.plan_cases(3, 30, inputs, light=True)
    again = fuzz.plan_cases(3, 30, inputs, light=True)
    other = fuzz.plan_cases(4, 30, inputs, light=True)
    assert [c.argv for c in first] == [c.argv for c in again]
    assert [c.argv for c in first] != [c.argv for c in other]
    assert not any(c.heavy for c in first)
    assert {c.family for c in first} <= set(fuzz.LIGHT_FAMILIES)


def test_quick_fuzz_slice(tmp_path):
    fuzz = _fuzzer()
    results, table = fuzz.fuzz(11, 12, jobs=2, work=tmp_path, light=True, verbose=False)
    assert len(results) >= 10, table  # read-only cases skipped where no mount
    assert not _failures(results), "\n".join(_failures(results))


@pytest.mark.slow
def test_full_fuzz_run(tmp_path):
    pytest.importorskip("keras")
    fuzz = _fuzzer()
    results, table = fuzz.fuzz(0, 240, jobs=2, work=tmp_path, verbose=False)
    print(table)
    assert len(results) >= 200, table
    assert not _failures(results), "\n".join(_failures(results))


def test_view_refuses_absurd_coordinates(tmp_path, run_cli, cli_error):
    """A bit flip in a .trk made a coordinate 1.5e21 mm: the picture could not
    be framed (matplotlib: 'Axis limits cannot be NaN or Inf', a traceback)."""
    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.phantom import generate_phantom

    ph = generate_phantom(counts=2, seed=3)
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    lines = [np.array(s, np.float32) for s in ph.streamlines]
    lines[1][3] = np.float32([1.5e21, 0.0, 0.0])
    bad = tmp_path / "bad.trk"
    save_bundles(bad, lines, ref, bbox_valid_check=False)
    out = tmp_path / "out"
    assert run_cli("dipy_view_tractogram", bad, "--out_dir", out) == 1
    assert "1.5e+21 mm" in cli_error("dipy_view_tractogram")
    assert not list(out.iterdir()) if out.exists() else True


def test_damaged_dataset_is_a_dataset_error(tmp_path):
    """Bit flips in a dataset's HDF5 header: h5py's KeyError ('ran off end of
    input buffer while decoding') ended dipy_train_tractoencoder in a
    traceback (fuzz seed 0, case 64). Any damage is a DatasetError now."""
    from dipy_tractogen.errors import DatasetError
    from dipy_tractogen.io.dataset import StreamlineDataset

    fuzz = _fuzzer()
    good = fuzz.build_inputs(tmp_path / "inputs", model=False)["dataset"]
    outcomes = set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        bad = tmp_path / f"bad{seed}.h5"
        bad.write_bytes(fuzz.bit_flips(good, rng, count=int(rng.integers(1, 64))))
        try:
            StreamlineDataset(bad).close()
            outcomes.add("read")
        except DatasetError as exc:
            assert str(bad) in str(exc)
            assert "\n" not in str(exc)
            outcomes.add("refused")
    assert "refused" in outcomes


@pytest.mark.parametrize(
    "data, says",
    [
        (b"participant_id\tage\nsub-\xe0\xff\t3\n", "is not UTF-8 text"),
        (b"participant_id\tage\n" + b"x" * 200_000 + b"\t3\n", "is not a table"),
    ],
)
def test_participants_not_text_is_one_line(tmp_path, data, says):
    """Random bytes as participants.tsv: a UnicodeDecodeError traceback of
    dipy_build_streamline_dataset (fuzz seed 0, case 194)."""
    from dipy_tractogen.errors import InputError
    from dipy_tractogen.io.participants import read_participants

    path = tmp_path / "participants.tsv"
    path.write_bytes(data)
    with pytest.raises(InputError, match=says):
        read_participants(path)
