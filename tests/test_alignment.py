"""Cohort alignment (dipy_tractogen.alignment) and subject transforms
(dipy_tractogen.io.transforms), on DIPY's real streamlines, offline: the two
subjects' cingulum bundles (``dipy.data.two_cingulum_bundles``) and the
fornix (``get_fnames(name="fornix")``)."""

import json

import numpy as np
import pytest
from dipy.data import get_fnames, two_cingulum_bundles
from dipy.tracking.streamline import Streamlines, transform_streamlines

from dipy_tractogen.alignment import (
    GROUPWISE,
    QC_COLUMNS,
    align_cohort,
    cohort_subjects,
    expand_paths,
    read_cohort,
    read_template,
    template_choice,
    write_alignment,
)
from dipy_tractogen.errors import InputError, OutputExistsError, TractogramError
from dipy_tractogen.io import (
    SubjectTransform,
    affine_text_path,
    read_subject_transform,
    reference_record,
    volume_holding,
    write_subject_transform,
)

CHILD = (np.eye(4), (20, 20, 20), (1.0, 1.0, 1.0), "RAS")


def _max_point_error(a, b):
    return max(
        float(np.abs(np.asarray(x) - np.asarray(y)).max())
        for x, y in zip(a, b, strict=True)
    )


def _compose(tx, ty, tz, rx, ry, rz):
    from dipy.align.streamlinear import compose_matrix44

    return compose_matrix44([tx, ty, tz, rx, ry, rz])


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """DIPY's OpenMP (SLR) and BLAS in one thread: on a busy 2-core runner
    more threads than cores make SLR several times slower."""
    from threadpoolctl import threadpool_limits

    with pytest.MonkeyPatch.context() as mp, threadpool_limits(1):
        mp.setenv("OMP_NUM_THREADS", "1")
        yield


@pytest.fixture(scope="module")
def cingula():
    c1, c2 = two_cingulum_bundles()
    return Streamlines(c1), Streamlines(c2)


@pytest.fixture(scope="module")
def fornix():
    from dipy.io.streamline import load_tractogram

    sft = load_tractogram(get_fnames(name="fornix"), "same", bbox_valid_check=False)
    return Streamlines(sft.streamlines)


@pytest.fixture(scope="module")
def cingula_aligned(cingula):
    """SLR of subject 2's cingulum to subject 1's (the issue's registration)."""
    c1, c2 = cingula
    refs = {"sub-01": volume_holding(c1), "sub-02": volume_holding(c2)}
    return align_cohort(
        {"sub-01": {"cingulum": c1}, "sub-02": {"cingulum": c2}},
        references=refs,
        template="sub-01",
        seed=0,
    )


# ----------------------------------------------------------------- registration


def test_cingula_aligned_closer_to_the_template_by_bmd_and_buan(cingula_aligned):
    (row,) = cingula_aligned.qc
    assert row["subject"] == "sub-02" and row["template"] == "sub-01"
    assert list(row) == list(QC_COLUMNS)
    print(
        "cingula sub-02 -> sub-01: bundle_min_distance "
        f"{row['bmd_before']:.1f} -> {row['bmd_after']:.1f} (mean closest MDF "
        f"{row['mdf_before_mm']:.2f} -> {row['mdf_after_mm']:.2f} mm), BUAN "
        f"{row['buan_before']:.3f} -> {row['buan_after']:.3f}"
    )
    assert row["bmd_after"] < 0.5 * row["bmd_before"]
    assert row["mdf_after_mm"] < row["mdf_before_mm"] - 5.0
    assert row["buan_after"] > row["buan_before"] + 0.2
    # the template subject does not move
    assert np.array_equal(cingula_aligned.transforms["sub-01"].matrix, np.eye(4))
    assert cingula_aligned.transforms["sub-01"].method == "template"
    assert cingula_aligned.transforms["sub-02"].method == "slr_with_qbx"
    # the aligned bundle is the native one moved by the transform
    t = cingula_aligned.transforms["sub-02"]
    moved = cingula_aligned.bundles["sub-02"]["cingulum"]
    expected = transform_streamlines(
        cingula_aligned.native["sub-02"]["cingulum"], t.matrix
    )
    assert _max_point_error(moved, expected) < 1e-4
    # the template subject's space is the template space
    assert t.template_reference == cingula_aligned.transforms["sub-01"].native_reference
    assert t.template_reference != t.native_reference


def test_transform_round_trips_through_its_files(cingula_aligned, cingula, tmp_path):
    t = cingula_aligned.transforms["sub-02"]
    path = tmp_path / "sub-02_transform.json"
    record, text = write_subject_transform(path, t, provenance={"test": 1})
    assert text == affine_text_path(path) == tmp_path / "sub-02_transform_affine.txt"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["sub-02_transform.json", "sub-02_transform_affine.txt"]
    )
    np.testing.assert_allclose(np.loadtxt(text), t.matrix, rtol=0, atol=1e-12)
    back = read_subject_transform(record)
    assert back.subject == "sub-02" and back.method == t.method
    native = cingula[1]
    there = back.to_template(native)
    again = back.to_native(there)
    err = _max_point_error(again, native)
    print(f"native -> template -> native round trip: max error {err:.2e} mm")
    assert err < 0.01
    assert _max_point_error(there, cingula_aligned.bundles["sub-02"]["cingulum"]) < 1e-3
    # the native header rebuilds the subject's space for DIPY
    from dipy.io.stateful_tractogram import Space, StatefulTractogram

    sft = StatefulTractogram(again, back.native_header(), Space.RASMM)
    assert sft.is_bbox_in_vox_valid()
    with open(record) as f:
        assert json.load(f)["provenance"] == {"test": 1}


def test_known_transform_recovered_and_deterministic(fornix):
    """SLR finds a known rigid motion of the fornix (its inverse), the same
    matrix for the same seed."""
    motion = _compose(4, -3, 2, 8, -5, 6)
    moved = transform_streamlines(fornix, motion)
    cohort = {"sub-a": {"fornix": fornix}, "sub-b": {"fornix": moved}}
    r1 = align_cohort(cohort, template="sub-a", x0="rigid", seed=3)
    r2 = align_cohort(cohort, template="sub-a", x0="rigid", seed=3)
    m = r1.transforms["sub-b"].matrix
    assert np.abs(m @ motion - np.eye(4)).max() < 1e-3
    assert np.array_equal(m, r2.transforms["sub-b"].matrix)
    (row,) = r1.qc
    assert row["mdf_before_mm"] > 10 and row["mdf_after_mm"] < 0.05
    assert row["buan_after"] > 0.99 > row["buan_before"]


def test_groupwise_brings_every_subject_closer(fornix):
    cohort = {
        "sub-1": {"fornix": fornix},
        "sub-2": {"fornix": transform_streamlines(fornix, _compose(6, 0, -4, 0, 8, 0))},
        "sub-3": {
            "fornix": transform_streamlines(fornix, _compose(-5, 5, 0, 10, 0, -6))
        },
    }
    result = align_cohort(cohort, template=GROUPWISE, x0="rigid", qbx_thr=(8,), seed=0)
    assert result.template == GROUPWISE and result.template_reference is None
    assert sorted(r["subject"] for r in result.qc) == ["sub-1", "sub-2", "sub-3"]
    for row in result.qc:
        assert row["mdf_after_mm"] < 0.5 * row["mdf_before_mm"], row
        assert row["outside_volume"] is None
    assert {t.method for t in result.transforms.values()} == {"groupwise_slr"}


def test_method_none_keeps_the_bundles_and_still_measures(fornix):
    shifted = transform_streamlines(fornix, _compose(2, 0, 0, 0, 0, 0))
    result = align_cohort(
        {"sub-1": {"fornix": fornix}, "sub-2": {"fornix": shifted}},
        template="sub-1",
        method="none",
        seed=0,
    )
    assert result.transforms["sub-2"].method == "identity"
    assert np.array_equal(result.transforms["sub-2"].matrix, np.eye(4))
    (row,) = result.qc
    assert row["bmd_before"] == pytest.approx(row["bmd_after"])
    assert row["buan_before"] == pytest.approx(row["buan_after"])
    assert 1.5 < row["mdf_after_mm"] < 2.5  # the 2 mm shift


def test_atlas_template_with_its_reference(fornix):
    atlas_ref = volume_holding(fornix, margin=0.0)
    moved = transform_streamlines(fornix, _compose(0, 0, 30, 0, 0, 0))
    result = align_cohort(
        {"sub-1": {"fornix": moved, "extra": moved}},
        template={"fornix": fornix},
        template_reference=atlas_ref,
        x0="rigid",
        seed=0,
    )
    assert result.template == "atlas"
    assert [r["bundle"] for r in result.qc] == ["fornix"]  # extra: not in the atlas
    (row,) = result.qc
    assert row["mdf_after_mm"] < 0.05 and row["outside_volume"] == 0
    t = result.transforms["sub-1"]
    assert t.template_reference == reference_record(atlas_ref)
    assert t.info["bundles_used"] == ["fornix"]
    # the extra bundle moved with the subject
    assert _max_point_error(result.bundles["sub-1"]["extra"], fornix) < 0.05


# --------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"template": "sub-9"}, "unknown template 'sub-9'"),
        ({"method": "bspline"}, "method must be one of"),
        ({"x0": "warp"}, "x0 must be one of"),
        ({"nb_pts": 1}, "nb_pts must be an integer >= 2"),
        ({"less_than": 5}, "less_than (5) must exceed greater_than"),
        ({"seed": -1}, "seed must be an integer"),
        ({"num_threads": 0}, "num_threads must be a non-zero integer"),
        (
            {
                "template": {
                    "other": [np.zeros((3, 3)) + [[0, 0, 0], [1, 0, 0], [2, 0, 0]]]
                }
            },
            "shares no bundle with the template",
        ),
    ],
)
def test_bad_options_are_one_line_errors(fornix, kwargs, words):
    cohort = {"sub-1": {"fornix": fornix}, "sub-2": {"fornix": fornix}}
    kwargs = {"template": "sub-1", "method": "none", **kwargs}
    with pytest.raises(InputError) as info:
        align_cohort(cohort, **kwargs)
    assert words in str(info.value) and "\n" not in str(info.value)


def test_groupwise_of_one_subject_and_bad_bundles_refused(fornix):
    with pytest.raises(InputError, match="groupwise template needs at least two"):
        align_cohort({"sub-1": {"fornix": fornix}}, template=GROUPWISE)
    bad = [s.copy() for s in fornix[:5]]
    bad[2][1] = np.nan
    with pytest.raises(TractogramError, match="NaN or infinite coordinates"):
        align_cohort({"sub-1": {"f": fornix}, "sub-2": {"f": bad}}, template="sub-1")
    with pytest.raises(InputError, match="no streamlines in bundle f of subject sub-2"):
        align_cohort({"sub-1": {"f": fornix}, "sub-2": {"f": []}}, template="sub-1")
    with pytest.raises(InputError, match="no subjects"):
        align_cohort({})
    with pytest.raises(InputError, match="share no bundle name"):
        align_cohort({"sub-1": {"a": fornix}, "sub-2": {"b": fornix}}, method="none")


def test_slr_refusal_is_an_input_error(fornix):
    """DIPY's own refusal (every streamline shorter than greater_than)."""
    with pytest.raises(InputError, match="registration of subject sub-2 failed"):
        align_cohort(
            {"sub-1": {"f": fornix}, "sub-2": {"f": fornix}},
            template="sub-1",
            greater_than=200,
        )


def test_transform_files_refuse_bad_content(tmp_path):
    ref = reference_record(CHILD)
    with pytest.raises(InputError, match="not found"):
        read_subject_transform(tmp_path / "missing.json")
    (tmp_path / "corrupt.json").write_text("{not json")
    with pytest.raises(InputError, match="cannot read transform"):
        read_subject_transform(tmp_path / "corrupt.json")
    t = SubjectTransform("sub-1", np.eye(4), ref)
    path = tmp_path / "t.json"
    write_subject_transform(path, t)
    with pytest.raises(OutputExistsError):
        write_subject_transform(path, t)
    record = json.loads(path.read_text())
    for matrix, words in (
        ([[np.nan, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "NaN"),
        (np.zeros((4, 4)).tolist(), "not affine"),
        ([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], "not invertible"),
        ([[1, 0], [0, 1]], "shape"),
    ):
        record["matrix"] = matrix
        bad = tmp_path / "bad.json"
        bad.write_text(json.dumps(record))  # json writes NaN as NaN
        with pytest.raises(InputError, match=words) as info:
            read_subject_transform(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match=r"\.json"):
        write_subject_transform(tmp_path / "t.txt", t)
    assert not list(tmp_path.glob(".*"))  # no temporaries left


# ----------------------------------------------------------------- files


def _save_trk(path, streamlines, reference):
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    path.parent.mkdir(parents=True, exist_ok=True)
    sft = StatefulTractogram(streamlines, reference, Space.RASMM)
    save_tractogram(sft, str(path), bbox_valid_check=False)
    return path


def test_read_cohort_names_subjects_and_bundles(tmp_path, fornix):
    ref = volume_holding(fornix)
    a = _save_trk(tmp_path / "sub-01" / "sub-01_ses-1_FX.trk", fornix, ref)
    b = _save_trk(tmp_path / "sub-01" / "sub-01_CG.trk", fornix[:10], ref)
    c = _save_trk(tmp_path / "sub-02" / "tracts" / "FX.trk", fornix, ref)
    assert expand_paths(str(tmp_path / "sub-*" / "**" / "*.trk")) == sorted(
        map(str, (a, b, c))
    )
    cohort = read_cohort(str(tmp_path / "sub-*" / "**" / "*.trk"))
    assert cohort.subjects == ["sub-01", "sub-02"]
    assert sorted(cohort.bundles["sub-01"]) == ["CG", "FX"]
    assert list(cohort.bundles["sub-02"]) == ["FX"]
    assert len(cohort.bundles["sub-01"]["CG"]) == 10
    assert cohort_subjects([a, c]) == {"sub-01": [str(a)], "sub-02": [str(c)]}
    with pytest.raises(InputError, match="cannot tell the subject"):
        cohort_subjects([tmp_path / "FX.trk"])
    with pytest.raises(InputError, match="no file matches"):
        expand_paths(str(tmp_path / "nothing*.trk"))
    other = _save_trk(tmp_path / "sub-01" / "sub-01_AF.trk", fornix, CHILD)
    with pytest.raises(TractogramError, match="not in one space"):
        read_cohort([a, other])
    # streamlines outside their header's volume: read unless asked to check
    outside = _save_trk(tmp_path / "sub-03" / "FX.trk", fornix, CHILD)
    assert len(read_cohort([outside]).bundles["sub-03"]["FX"]) == len(fornix)
    with pytest.raises(TractogramError, match="bounding box"):
        read_cohort([outside], bbox_valid_check=True)
    # a folder of bundle files as template
    atlas = tmp_path / "atlas"
    _save_trk(atlas / "FX.trk", fornix, ref)
    _save_trk(atlas / "CG.trk", fornix[:20], ref)
    bundles, reference, files = read_template(atlas)
    assert sorted(bundles) == ["CG", "FX"] and len(files) == 2
    assert np.allclose(reference[0], ref[0])


def test_template_choice():
    subjects = ["sub-01", "sub-02"]
    assert template_choice("groupwise", subjects) == ("groupwise", "groupwise")
    assert template_choice("02", subjects) == ("subject", "sub-02")
    assert template_choice(get_fnames(name="fornix"), subjects)[0] == "atlas"
    with pytest.raises(InputError, match="unknown template 'sub-03'"):
        template_choice("sub-03", subjects)
    with pytest.raises(InputError, match="at least two subjects"):
        template_choice("groupwise", ["sub-01"])


def test_write_alignment_commits_everything_together(tmp_path, fornix):
    shifted = transform_streamlines(fornix, _compose(3, 0, 0, 0, 0, 0))
    result = align_cohort(
        {"sub-1": {"fornix": fornix}, "sub-2": {"fornix": shifted}},
        template="sub-1",
        method="none",
        seed=0,
    )
    outputs, report = write_alignment(result, tmp_path / "out", renderer="matplotlib")
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted(p.name for p in outputs.paths)
    assert "sub-1_overlay.png" not in names and "sub-2_overlay.png" in names
    assert report["rows"][0]["subject"] == "sub-2"
    assert report["output_reference"]["how"] == "built to hold every aligned streamline"
    tsv = (tmp_path / "out" / "alignment_qc.tsv").read_text().splitlines()
    assert tsv[0].split("\t") == list(QC_COLUMNS) and len(tsv) == 2
    before = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    with pytest.raises(OutputExistsError):
        write_alignment(result, tmp_path / "out", renderer="matplotlib")
    after = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "out").iterdir()}
    assert after == before  # nothing replaced, nothing left behind
