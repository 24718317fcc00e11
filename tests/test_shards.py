"""Sharded generation: parts of one run, joined by DIPY's concatenation.

Three shards of a conditional run (the shipped cohort model, an age sweep:
bundles and per-streamline conditions in the file) are written separately,
joined with DIPY's ``dipy_concatenate_tractograms`` and compared with one
run of the same seed and count; parts that do not belong together are
refused in one line.
"""

import json
import shutil
import subprocess

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.generation.shards import (
    check_shards,
    parse_shard,
    plan_pieces,
    shard_command_lines,
    shard_pieces,
    slurm_array_script,
)

CMD = "dipy_generate_tractogram"
RUN = {"n_streamlines": 30, "chunk_size": 10, "apply_filters": False}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("4/3", "shard 4/3: the shard index must be in 1..3"),
        ("0/0", "shard 0/0: the number of shards must be >= 1"),
        ("0/3", "shard index must be in 1..3"),
        ("a/b", "shard must be i/n with integers"),
        ("3", "shard must be i/n with integers"),
        ("1/2/3", "shard must be i/n with integers"),
    ],
)
def test_bad_shard_specs(text, message):
    with pytest.raises(InputError, match=message):
        parse_shard(text)


def test_pieces_and_shards_tile_the_run():
    counts = {0: 7, 1: 13, 2: 5}
    pieces = plan_pieces(counts, 10)
    assert len(pieces) == 3
    for k, v in counts.items():
        assert sum(p.get(k, 0) for p in pieces) == v
    sizes = [sum(p.values()) for p in pieces]  # the spans 10, 10, 5, within
    assert sum(sizes) == 25  # the rounding of each class (3 classes)
    assert all(abs(a - b) < 3 for a, b in zip(sizes, [10, 10, 5], strict=True))
    assert plan_pieces(counts, 25) == [counts]  # one piece: the whole run
    ranges = [shard_pieces(7, (i, 3)) for i in (1, 2, 3)]
    assert [list(r) for r in ranges] == [[0, 1], [2, 3], [4, 5, 6]]
    with pytest.raises(InputError, match="use at most 2 shard"):
        shard_pieces(2, "3/3")
    lines = shard_command_lines([CMD, "--seed", "4", "--out_dir", "o"], 3)
    assert lines[1].endswith(
        "--shard 2/3 --out_tractogram generated_part2of3.trx --out_report "
        "generated_part2of3.html --no_snapshot"
    )
    assert lines[3].startswith("dipy_concatenate_tractograms o/generated_part1of3")
    assert "--check_shards 'o/generated_part*of3.trx'" in lines[4]
    script = slurm_array_script([CMD, "--seed", "4"], 3)
    assert "#SBATCH --array=1-3" in script
    assert "--shard ${SLURM_ARRAY_TASK_ID}/3" in script


@pytest.fixture(scope="module")
def sharded(tmp_path_factory):
    """One run, its three parts and a part of another seed (cohort model)."""
    pytest.importorskip("keras")
    from dipy_tractogen.generation.pipeline import generate_tractogram

    out = tmp_path_factory.mktemp("shards")
    request = {"age": [30.0, 60.0]}
    reports = {}
    for name, shard, seed in (
        ("one", None, 1),
        ("part1", "1/3", 1),
        ("part2", "2/3", 1),
        ("part3", "3/3", 1),
        ("other1", "1/3", 2),
    ):
        reports[name] = generate_tractogram(
            out / f"{name}.trx",
            model="cohort",
            request=request,
            seed=seed,
            shard=shard,
            **RUN,
        )
    return out, reports


def _load(path):
    from dipy_tractogen.io.tractograms import load_bundles

    sft, ids, names, meta = load_bundles(path)
    dps = {k: np.asarray(v) for k, v in sft.data_per_streamline.items()}
    return np.asarray(sft.streamlines.get_data()), sft, ids, names, dps, meta


def test_three_shards_joined_by_dipy_equal_one_run(sharded):
    out, reports = sharded
    parts = [out / f"part{i}.trx" for i in (1, 2, 3)]
    for i, part in enumerate(parts, 1):
        meta = json.loads(part.with_suffix(".json").read_text())["metadata"]
        shard = meta["shard"]
        assert (shard["index"], shard["count"], shard["seed"]) == (i, 3, 1)
        assert shard["n_requested_total"] == 30 and meta["n_requested"] == 10
    assert sum(reports[f"part{i}"].n_produced for i in (1, 2, 3)) == 30
    proc = subprocess.run(
        [
            shutil.which("dipy_concatenate_tractograms"),
            *map(str, parts),
            "--out_dir",
            str(out),
            "--out_tractogram",
            "joined",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    joined = out / "joined.trx"
    summary = check_shards(str(out / "part*.trx"), joined=joined)
    assert summary["parts"] == [str(p) for p in parts]
    assert summary["n_streamlines"] == 30
    X1, _, ids1, names1, dps1, _ = _load(out / "one.trx")
    X3, _, ids3, names3, dps3, meta3 = _load(joined)
    # the same streamlines (here even in the same order), bundles, conditions
    order1 = np.lexsort(X1.reshape(len(X1), -1).T)
    order3 = np.lexsort(X3.reshape(len(X3), -1).T)
    np.testing.assert_array_equal(X1[order1], X3[order3])
    np.testing.assert_array_equal(X1, X3)
    np.testing.assert_array_equal(ids1, ids3)
    assert names1 == names3 and len(names1) == 7
    assert set(dps1) == set(dps3) >= {"bundle", "condition_age", "condition_status"}
    for key in dps1:
        np.testing.assert_array_equal(dps1[key], dps3[key])
    # the joined file's provenance (its sidecar) says it was sharded
    assert meta3["sharded"]["shards"] == 3 and meta3["sharded"]["seed"] == 1
    assert meta3["n_requested"] == 30 and meta3["report"]["n_produced"] == 30


def test_mismatched_parts_are_refused(sharded, tmp_path):
    out, _ = sharded
    parts = [str(out / f"part{i}.trx") for i in (1, 2, 3)]
    other = str(out / "other1.trx")
    cases = [
        (
            [other, *parts[1:]],
            r"other1.trx and .*part2.trx are parts of different runs \(seed 2 and 1\)",
        ),
        (parts[:2], r"missing shard\(s\) 3 of 3"),
        ([*parts, parts[0].replace("part1", "part1")], None),  # a repeat: dropped
        ([*parts[:2], str(out / "one.trx")], "one.trx is not a part of a sharded"),
        ([str(tmp_path / "none*.trx")], "no part matches"),
    ]
    for given, message in cases:
        if message is None:
            assert check_shards(given)["shards"] == 3
            continue
        with pytest.raises(InputError, match=message):
            check_shards(given)


def test_command_line(sharded, run_cli, cli_error, capsys, tmp_path):
    out, _ = sharded
    o = tmp_path / "o"
    for extra, message in (
        (["--shard", "4/3"], "shard 4/3: the shard index must be in 1..3"),
        (["--shard", "0/0"], "the number of shards must be >= 1"),
        (["--shard", "2/2"], "the run has 1 piece(s)"),
    ):
        assert run_cli(CMD, *extra, "--n_streamlines", 20, "--out_dir", o) == 1
        assert message in cli_error(CMD)
    assert not o.exists() or not any(o.iterdir())
    # mismatched parts given to the check: one line, no sidecar written
    joined = o / "joined.trx"
    o.mkdir(exist_ok=True)
    shutil.copy(out / "one.trx", joined)
    pattern = f"{out / 'part1.trx'},{out / 'other1.trx'}"
    args = ["--check_shards", pattern, "--out_dir", o, "--out_tractogram", "joined.trx"]
    assert run_cli(CMD, *args) == 1
    assert "are parts of different runs (seed 1 and 2)" in cli_error(CMD)
    assert sorted(p.name for p in o.iterdir()) == ["joined.trx"]
    assert run_cli(CMD, "--print_shards", 2, "--chunk_size", 5) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "--shard 2/2" in lines[1]
