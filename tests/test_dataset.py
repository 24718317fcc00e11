"""Tests of the HDF5 streamline dataset (dipy_tractogen.io.dataset)."""

import os
import pickle

import h5py
import nibabel as nib
import numpy as np
import pytest
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.io.streamline import save_tractogram

from dipy_tractogen.errors import (
    DatasetError,
    InputError,
    OutputExistsError,
    TractogramError,
)
from dipy_tractogen.io.dataset import (
    FORMAT,
    StreamlineDataset,
    build_dataset,
    bundle_label_from_path,
)
from dipy_tractogen.io.tractograms import load_tractogram_checked, save_bundles
from dipy_tractogen.measures.attributes import compute_attributes
from dipy_tractogen.measures.resampling import resample_streamlines

N_PTS = 12


def _reference(folder, *, shift=-20.0, name="ref.nii.gz"):
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = shift
    path = os.path.join(folder, name)
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), affine), path)
    return path


def _bundle(rng, n, offset):
    out = []
    for _ in range(n):
        m = int(rng.integers(5, 30))
        t = np.linspace(0, 1, m)[:, None]
        start = np.array([-10.0, offset, 0.0]) + rng.normal(0, 0.5, 3)
        out.append(start + t * [20.0, 3.0, 2.0] + rng.normal(0, 0.2, (m, 3)))
    return [s.astype(np.float32) for s in out]


def _write(path, streamlines, ref):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    sft = StatefulTractogram(streamlines, ref, Space.RASMM)
    save_tractogram(sft, str(path), bbox_valid_check=False)
    return str(path)


@pytest.fixture
def cohort(tmp_path):
    """4 subjects x (AF_L, CST_R) .trk files, 20-45 streamlines each."""
    ref = _reference(tmp_path)
    rng = np.random.default_rng(0)
    files = []
    for s in range(1, 5):
        for b, name in enumerate(("CST_R", "AF_L")):
            n = int(rng.integers(20, 45))
            path = tmp_path / f"sub-0{s}" / f"sub-0{s}_{name}.trk"
            files.append(_write(path, _bundle(rng, n, -8.0 + 10 * b), ref))
    return tmp_path, ref, files


def _build(cohort, **kw):
    tmp, _, files = cohort
    opts = {"n_points": N_PTS, "chunk_rows": 16, "slice_rows": 10}
    opts.update(kw)
    return build_dataset(files, tmp / "ds.h5", **opts)


def test_round_trip_values(cohort):
    tmp, ref, files = cohort
    out = _build(cohort)
    expected = np.concatenate(
        [
            resample_streamlines(load_tractogram_checked(f).streamlines, N_PTS)
            for f in files
        ]
    )
    labels = np.concatenate(
        [
            np.full(len(load_tractogram_checked(f)), "AF_L" in f, dtype=int)
            for f in files
        ]
    )
    with StreamlineDataset(out) as ds:
        assert len(ds) == len(expected)
        assert ds.n_points == N_PTS
        assert ds.bundle_names == ("AF_L", "CST_R")
        assert ds.participant_ids == ("sub-01", "sub-02", "sub-03", "sub-04")
        np.testing.assert_array_equal(ds.read(np.arange(len(ds))), expected)
        np.testing.assert_array_equal(ds.labels(), 1 - labels)  # AF_L is id 0
        rev = np.arange(len(ds))[::-7]
        np.testing.assert_array_equal(ds.read(rev), expected[rev])
        np.testing.assert_array_equal(ds.read([5, 5, 0]), expected[[5, 5, 0]])
        attrs = compute_attributes(expected, ["length", "curvature"])
        np.testing.assert_allclose(ds.attributes("length"), attrs["length"])
        np.testing.assert_allclose(ds.attributes("curvature"), attrs["curvature"])
        nib_ref = nib.load(ref)
        np.testing.assert_allclose(ds.affine, nib_ref.affine)
        np.testing.assert_array_equal(ds.dimensions, (20, 20, 20))
        assert ds.reference[3] == "RAS"
        src = ds.sources
        assert [s["path"] for s in src] == [os.path.abspath(f) for f in files]
        assert src[1]["start"] == src[0]["count"]
        assert (
            ds.subject_indices(np.arange(src[2]["start"], src[3]["start"])).tolist()[0]
            == 1
        )
        with h5py.File(out) as f:
            assert f.attrs["format"] == FORMAT
            assert f["streamlines"].chunks == (16, N_PTS, 3)
            assert f["streamlines"].dtype == np.float32
    # without a cache (capacity of 2 chunks) reads go through contiguous ranges
    with StreamlineDataset(out, cache_mb=0) as ds:
        rng = np.random.default_rng(0)
        for idx in (np.arange(len(ds)), rng.permutation(len(ds))[:50], [3, 40, 3]):
            np.testing.assert_array_equal(ds.read(idx), expected[idx])
    # a DIPY StatefulTractogram can be rebuilt from the stored reference
    StatefulTractogram(list(expected[:3]), ds.reference, Space.RASMM)


def test_split_by_subject(cohort):
    out = _build(cohort, split=(0.5, 0.25, 0.25), seed=3)
    with StreamlineDataset(out) as ds:
        subject = ds.subject_indices()
        seen = {}
        for name in ("train", "valid", "test"):
            idx = ds.indices(name)
            subs = set(subject[idx].tolist())
            assert subs, f"empty split {name}"
            for s in subs:
                assert s not in seen, f"subject {s} in {seen.get(s)} and {name}"
                seen[s] = name
        assert len(seen) == 4
        sizes = ds.split_sizes()
        assert sum(sizes.values()) == len(ds)
        np.testing.assert_array_equal(
            np.sort(np.concatenate([ds.indices(s) for s in sizes])), np.arange(len(ds))
        )
    # another seed gives another (still disjoint) assignment; same seed the same
    out2 = build_dataset(
        cohort[2], cohort[0] / "ds2.h5", n_points=N_PTS, split=(0.5, 0.25, 0.25), seed=3
    )
    with StreamlineDataset(out) as a, StreamlineDataset(out2) as b:
        np.testing.assert_array_equal(a.indices("test"), b.indices("test"))


def test_single_subject_falls_back_to_streamlines(tmp_path, dipy_log):
    ref = _reference(tmp_path)
    rng = np.random.default_rng(1)
    files = [
        _write(tmp_path / "AF_L.trk", _bundle(rng, 60, -8), ref),
        _write(tmp_path / "CST_R.trk", _bundle(rng, 40, 2), ref),
    ]
    out = build_dataset(files, tmp_path / "d.h5", n_points=N_PTS, split=(0.8, 0.1, 0.1))
    assert "splitting by streamline instead" in dipy_log.text
    with StreamlineDataset(out) as ds:
        assert ds.participant_ids == ("unknown",)
        assert ds.split_sizes() == {"train": 80, "valid": 10, "test": 10}
        # exact fractions within each file
        assert (ds.indices("test") < 60).sum() == 6
        assert ds.bundle_names == ("AF_L", "CST_R")


def test_batches_visit_everything_once(cohort):
    out = _build(cohort)
    with StreamlineDataset(out) as ds:
        idx = ds.indices("train")
        all_x = ds.read(np.arange(len(ds)))
        batches = list(ds.iter_batches("train", 7, seed=1, fields=("index", "length")))
        assert len(batches) == ds.n_batches("train", 7) == -(-len(idx) // 7)
        got = np.concatenate([b["index"] for b in batches])
        np.testing.assert_array_equal(np.sort(got), idx)
        assert not np.array_equal(got, idx)  # shuffled
        for b in batches:
            np.testing.assert_array_equal(b["streamlines"], all_x[b["index"]])
            np.testing.assert_array_equal(b["bundle"], ds.labels(b["index"]))
            np.testing.assert_allclose(b["length"], ds.attributes("length", b["index"]))
        assert all(len(b["index"]) == 7 for b in batches[:-1])
        # same seed -> same order; other seed or epoch -> another order
        again = np.concatenate(
            [b["index"] for b in ds.iter_batches("train", 7, seed=1, fields=("index",))]
        )
        np.testing.assert_array_equal(again, got)
        other = ds.epoch_order("train", seed=2)
        assert not np.array_equal(other, got)
        assert not np.array_equal(ds.epoch_order("train", seed=1, epoch=1), got)
        # random access gives the same batches
        for i in (0, 3, len(batches) - 1):
            b = ds.batch("train", i, 7, seed=1, fields=("index",))
            np.testing.assert_array_equal(b["index"], batches[i]["index"])
            np.testing.assert_array_equal(b["streamlines"], batches[i]["streamlines"])
        # no shuffle: sorted order; drop_remainder drops the last partial batch
        plain = list(
            ds.iter_batches(
                "train", 7, shuffle=False, drop_remainder=True, fields=("index",)
            )
        )
        assert len(plain) == len(idx) // 7
        np.testing.assert_array_equal(
            np.concatenate([b["index"] for b in plain]), idx[: 7 * len(plain)]
        )
        with pytest.raises(InputError, match="batch 999 out of range"):
            ds.batch("train", 999, 7)


def test_shuffle_stays_within_few_chunks(cohort):
    out = _build(cohort)
    with StreamlineDataset(out) as ds:
        order = ds.epoch_order("all", seed=0, buffer_blocks=2)
        # a window of 16 positions (one chunk) spans at most 2 buffers of 2 chunks
        for k in range(0, len(order) - 16, 16):
            assert len(np.unique(order[k : k + 16] // ds.chunk_rows)) <= 4


def test_flip(cohort):
    out = _build(cohort)
    with StreamlineDataset(out) as ds:
        b0 = ds.batch("all", 0, 10, seed=4, fields=("index",))
        b1 = ds.batch("all", 0, 10, seed=4, flip_p=1.0, fields=("index",))
        np.testing.assert_array_equal(b1["streamlines"], b0["streamlines"][:, ::-1])
        bh = ds.batch("all", 0, 10, seed=4, flip_p=0.5)
        again = ds.batch("all", 0, 10, seed=4, flip_p=0.5)
        np.testing.assert_array_equal(bh["streamlines"], again["streamlines"])
        flipped = ~np.all(bh["streamlines"] == b0["streamlines"], axis=(1, 2))
        assert 0 < flipped.sum() < 10
        it = next(ds.iter_batches("all", 10, seed=4, flip_p=0.5))
        np.testing.assert_array_equal(it["streamlines"], bh["streamlines"])


def test_participants_covariates(cohort):
    tmp = cohort[0]
    tsv = tmp / "participants.tsv"
    tsv.write_text(
        "participant_id\tage\tstatus\n"
        "sub-01\t30\tcontrol\nsub-02\t40\tpatient\nsub-03\tn/a\tcontrol\n"
        "sub-04\t60\tpatient\nsub-05\t70\tpatient\n"
    )
    out = _build(cohort, participants=tsv)
    with StreamlineDataset(out) as ds:
        assert ds.covariate_names == ("age", "status")
        assert ds.covariate_categories("status") == ("control", "patient")
        assert ds.covariate_categories("age") is None
        subj = ds.subject_indices()
        status = ds.covariates("status")
        np.testing.assert_array_equal(status, subj % 2)
        ages = ds.covariates("age", allow_missing=True)
        assert np.isnan(ages[subj == 2]).all()
        np.testing.assert_array_equal(ages[subj == 3], 60)
        with pytest.raises(DatasetError, match=r"'age' is missing .*: sub-03$"):
            ds.covariates("age")
        ok = np.flatnonzero(subj != 2)
        np.testing.assert_array_equal(ds.covariates("age", ok), (ages[ok]))
        b = ds.batch("all", 0, 5, shuffle=False, fields=("status", "subject"))
        np.testing.assert_array_equal(b["status"], b["subject"] % 2)
        with pytest.raises(DatasetError, match="unknown batch field 'weight'"):
            ds.batch("all", 0, 5, fields=("weight",))
        np.testing.assert_array_equal(ds.subjects["status"], [0, 1, 0, 1])


def test_participants_missing_subject(cohort):
    tmp = cohort[0]
    tsv = tmp / "participants.tsv"
    tsv.write_text("participant_id\tage\nsub-01\t30\nsub-02\t40\nsub-04\t50\n")
    with pytest.raises(InputError, match=r"subject\(s\) missing from .*: sub-03$"):
        _build(cohort, participants=tsv)
    assert not (tmp / "ds.h5").exists()


def test_bundles_from_files(tmp_path):
    ref = _reference(tmp_path)
    rng = np.random.default_rng(2)
    sl = _bundle(rng, 10, -8) + _bundle(rng, 6, 4)
    ids = np.r_[np.zeros(10, int), np.ones(6, int)]
    a = save_bundles(
        tmp_path / "sub-01_multi.trx", sl, ref, bundle_ids=ids, bundle_names=["Z", "B"]
    )
    b = _write(tmp_path / "sub-02_A.trk", _bundle(rng, 5, 0), ref)
    out = build_dataset([a, b], tmp_path / "d.h5", n_points=N_PTS, split=(1, 0, 0))
    with StreamlineDataset(out) as ds:
        assert ds.bundle_names == ("A", "B", "Z")
        np.testing.assert_array_equal(ds.labels(), np.r_[[2] * 10, [1] * 6, [0] * 5])
        assert len(ds.indices("train")) == 21 and len(ds.indices("test")) == 0
    out = build_dataset(
        [a, b], tmp_path / "f.h5", n_points=N_PTS, bundle_from="filename"
    )
    with StreamlineDataset(out) as ds:
        assert ds.bundle_names == ("A", "multi")
    with pytest.raises(TractogramError, match="sub-02_A.trk carries no bundle ids"):
        build_dataset([a, b], tmp_path / "g.h5", bundle_from="file")
    assert not (tmp_path / "g.h5").exists()


def test_bad_inputs_leave_nothing(cohort):
    tmp, ref, files = cohort
    before = sorted(os.listdir(tmp))
    other = _reference(tmp, shift=-22.0, name="other.nii.gz")
    bad = _write(
        tmp / "sub-09" / "sub-09_AF_L.trk",
        _bundle(np.random.default_rng(3), 5, 0),
        other,
    )
    with pytest.raises(TractogramError, match="space of .*sub-09_AF_L.trk differs"):
        build_dataset([*files, bad], tmp / "ds.h5", n_points=N_PTS)
    with pytest.raises(TractogramError, match="not found: .*missing.trk"):
        build_dataset([*files, tmp / "missing.trk"], tmp / "ds.h5")
    nan = [s.copy() for s in _bundle(np.random.default_rng(4), 5, 0)]
    nan[1][2, 1] = np.nan
    nanf = _write(tmp / "sub-05" / "sub-05_nan.trk", nan, ref)
    with pytest.raises(TractogramError, match="NaN"):
        build_dataset([files[0], nanf], tmp / "ds.h5")
    with pytest.raises(InputError, match="unknown streamline attribute"):
        build_dataset(files, tmp / "ds.h5", attributes=("torsion",))
    with pytest.raises(InputError, match="split must be 3 non-negative"):
        build_dataset(files, tmp / "ds.h5", split=(0.5, 0.2, 0.2))
    with pytest.raises(InputError, match="input given twice"):
        build_dataset([files[0], files[0]], tmp / "ds.h5")
    assert sorted(os.listdir(tmp)) == sorted(
        [*before, "other.nii.gz", "sub-09", "sub-05"]
    )
    existing = tmp / "ds.h5"
    existing.write_bytes(b"keep me")
    with pytest.raises(OutputExistsError, match="ds.h5"):
        build_dataset(files, existing)
    assert existing.read_bytes() == b"keep me"
    build_dataset(files[:2], existing, n_points=N_PTS, force=True)
    assert len(StreamlineDataset(existing)) > 0


def test_reader_errors(tmp_path, cohort):
    with pytest.raises(DatasetError, match="dataset not found"):
        StreamlineDataset(tmp_path / "none.h5")
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"not hdf5")
    with pytest.raises(DatasetError, match="not a readable HDF5 file"):
        StreamlineDataset(junk)
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.attrs["format"] = "tractolearn"
    with pytest.raises(DatasetError, match="not a dipy-tractogen streamline dataset"):
        StreamlineDataset(other)
    out = _build(cohort)
    with h5py.File(out, "a") as f:
        del f["split"]
    with pytest.raises(DatasetError, match="lacks /split"):
        StreamlineDataset(out)


def test_reader_pickles_and_reopens(cohort):
    out = _build(cohort)
    ds = StreamlineDataset(out)
    x = ds.read([0, 1, 2])
    clone = pickle.loads(pickle.dumps(ds))
    np.testing.assert_array_equal(clone.read([0, 1, 2]), x)
    ds.close()
    np.testing.assert_array_equal(ds.read([0, 1, 2]), x)  # reopens lazily
    with pytest.raises(DatasetError, match="out of range"):
        ds.read([len(ds)])
    with pytest.raises(DatasetError, match="attribute 'torsion' not in"):
        ds.attributes("torsion")
    with pytest.raises(InputError, match="unknown split 'training'"):
        ds.indices("training")
    assert "StreamlineDataset" in repr(ds)
    ds.close()


def test_fornix_end_to_end(tmp_path):
    from dipy.data import get_fnames

    out = build_dataset(
        [get_fnames(name="fornix")],
        tmp_path / "fornix.h5",
        n_points=N_PTS,
        bbox_valid_check=False,
        split_by="streamline",
    )
    with StreamlineDataset(out) as ds:
        assert len(ds) == 300 and ds.bundle_names == ("tracks300",)
        assert ds.split_sizes() == {"train": 240, "valid": 30, "test": 30}


def test_bundle_label_from_path():
    assert bundle_label_from_path("x/sub-01_ses-2_AF_L.trk") == "AF_L"
    assert bundle_label_from_path("sub-01.trk") == "sub-01"
    assert bundle_label_from_path("CST_R.tck") == "CST_R"


def test_shards_read_only_their_own_chunks(cohort):
    """Two workers of a sharded training run: each reads only its own HDF5
    chunks (counted by the reader, in every epoch), together they serve every
    training streamline once per epoch, in the same number of steps, and
    the same seed gives the same shares."""
    pytest.importorskip("keras")
    from dipy_tractogen.training.data import HDF5StreamlineSequence

    path = _build(cohort, split=(0.8, 0.2, 0.0), split_by="streamline")
    with StreamlineDataset(path) as ds:
        train = ds.indices("train")
        chunks = set((train // ds.chunk_rows).tolist())
        # one shard is the ordinary epoch order
        pos = ds.shard_positions(train, seed=3, epoch=1)
        np.testing.assert_array_equal(
            train[pos], ds.epoch_order("train", seed=3, epoch=1)
        )
        with pytest.raises(InputError, match="shard 2 out of range"):
            ds.shard_positions(train, shard=2, n_shards=2)
    assert len(chunks) >= 6

    def worker(index, split="train"):
        reader = StreamlineDataset(path)  # one process each
        seq = HDF5StreamlineSequence(reader, split, batch_size=10, seed=3, flip_p=0.5)
        seq.set_shard(index, 2)
        served = []
        for epoch in (0, 1):
            seq.set_epoch(epoch)
            rows = [
                seq.split_batch(i, fields=("index",))["index"] for i in range(len(seq))
            ]
            served.append(np.concatenate(rows))
        return seq, reader, served

    (s0, r0, served0), (s1, r1, served1) = worker(0), worker(1)
    assert len(s0) == len(s1) == -(-len(train) // 10)  # the steps of one device
    for epoch in (0, 1):
        both = np.concatenate([served0[epoch], served1[epoch]])
        np.testing.assert_array_equal(np.sort(both), train)  # each once
    read0, read1 = set(r0.chunk_reads), set(r1.chunk_reads)
    assert read0 and read1 and not read0 & read1  # no chunk read twice
    assert read0 | read1 == chunks
    assert abs(len(served0[0]) - len(served1[0])) < ds.chunk_rows
    assert not np.array_equal(served0[0], served0[1])  # reshuffled each epoch
    assert set(served0[0].tolist()) == set(served0[1].tolist())  # same chunks
    # explicit members (a validation drawn from train) are sharded too
    again = worker(0, split=train)[2]
    np.testing.assert_array_equal(np.sort(again[0]), np.sort(served0[0]))
