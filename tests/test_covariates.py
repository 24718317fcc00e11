"""Tests of dipy_tractogen.io.participants."""

import json

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.io.participants import (
    covariate_categories,
    covariates_for,
    name_subjects,
    read_participants,
    subject_from_path,
    unused_participants,
)

TSV = (
    "participant_id\tage\tsex\tstatus\n"
    "sub-01\t34\tF\tcontrol\n"
    "sub-02\t61.5\tM\tpatient\n"
    "03\tn/a\tF\tcontrol\n"
    "sub-04\t45\t\tpatient\n"
)


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_text(TSV)
    return read_participants(path)


def test_read_participants(table):
    assert list(table) == ["sub-01", "sub-02", "sub-03", "sub-04"]
    assert table["sub-02"] == {"age": 61.5, "sex": "M", "status": "patient"}
    assert table["sub-03"]["age"] is None
    assert table["sub-04"]["sex"] is None
    assert covariate_categories(table, "status") == ("control", "patient")
    assert covariate_categories(table, "age") is None


def test_covariates_for(table):
    cov = covariates_for(["sub-02", "sub-01", "02"], table, ["age", "status"])
    np.testing.assert_array_equal(cov["age"].values, [61.5, 34, 61.5])
    assert cov["age"].values.dtype == np.float32 and cov["age"].categories is None
    np.testing.assert_array_equal(cov["status"].values, [1, 0, 1])
    assert cov["status"].categories == ("control", "patient")


def test_covariate_errors(table):
    with pytest.raises(
        InputError,
        match=r"1 subject\(s\) with data are not in the participants "
        r"table: sub-09 \(add their rows, or leave their files out\)$",
    ):
        covariates_for(["sub-01", "sub-09"], table, "age")
    with pytest.raises(
        InputError,
        match=r"'age' is missing \(n/a\) for 1 subject\(s\): sub-03 \(leave "
        r"their files out, or condition without 'age'\)$",
    ):
        covariates_for(["sub-01", "sub-03"], table, "age")
    with pytest.raises(InputError, match="unknown covariate.*'weight'.*has: age"):
        covariates_for(["sub-01"], table, ["weight"])
    # many subjects: ten named, the rest counted, one line
    many = [f"sub-{i:02d}" for i in range(10, 40)]
    with pytest.raises(InputError, match=r"30 subject.*sub-19 and 20 more") as exc:
        covariates_for(many, table, "age")
    assert "\n" not in str(exc.value) and "sub-20" not in str(exc.value)


#: a table as studies write it: BIDS n/a, empty cells, R/pandas NA and nan,
#: a three-level group, sex, a site coded as numbers (categorical through the
#: sidecar's Levels), a numeric column with gaps, ids with and without sub-
STUDY = (
    "participant_id\tage\tsex\tgroup\tsite\tmmse\thandedness\n"
    "sub-01\t71\tF\tAD\t1\t21\tR\n"
    "sub-02\t68.5\tM\tCN\t2\tn/a\tL\n"
    "sub-03\tn/a\tF\tMCI\t1\t26\t\n"
    "04\t80\tM\tCN\t3\tNA\tR\n"
    "sub-05\t\tF\tMCI\t2\t27\tN/A\n"
    "sub-06\t59\tF\tAD\t3\tnan\tR\n"
)


@pytest.fixture
def study(tmp_path):
    path = tmp_path / "participants.tsv"
    path.write_text(STUDY)
    (tmp_path / "participants.json").write_text(
        json.dumps(
            {
                "age": {"Units": "year"},
                "site": {"Levels": {"1": "Montreal", "2": "Sherbrooke", "3": "Lyon"}},
            }
        )
    )
    return read_participants(path)


def test_a_study_table_as_written(study):
    assert list(study) == [f"sub-0{i}" for i in range(1, 7)]
    assert study["sub-04"] == {
        "age": 80.0,
        "sex": "M",
        "group": "CN",
        "site": "3",
        "mmse": None,
        "handedness": "R",
    }
    # n/a, empty, NA, nan and N/A are all missing
    assert study["sub-03"]["age"] is None and study["sub-05"]["age"] is None
    assert [study[s]["mmse"] for s in ("sub-02", "sub-04", "sub-06")] == [None] * 3
    assert study["sub-03"]["handedness"] is None
    assert study["sub-05"]["handedness"] is None
    assert covariate_categories(study, "group") == ("AD", "CN", "MCI")
    assert covariate_categories(study, "sex") == ("F", "M")
    assert covariate_categories(study, "site") == ("1", "2", "3")  # Levels
    assert covariate_categories(study, "handedness") == ("L", "R")
    assert covariate_categories(study, "mmse") is None
    cov = covariates_for(["sub-06", "sub-02", "sub-03", "01"], study, ["group", "site"])
    np.testing.assert_array_equal(cov["group"].values, [0, 1, 2, 0])
    np.testing.assert_array_equal(cov["site"].values, [2, 1, 0, 0])
    with pytest.raises(InputError, match=r"'mmse' is missing.*2 subject.*02, sub-06"):
        covariates_for(["sub-01", "sub-02", "sub-06"], study, "mmse")


def test_rows_without_data_and_names():
    table = {f"sub-{i}": {"age": 1.0} for i in (3, 1, 2)}
    assert unused_participants(["1", "sub-2"], table) == ["sub-3"]
    assert unused_participants(["sub-1", "sub-2", "sub-3"], table) == []
    assert name_subjects(["b", "a", "b"]) == "a, b"
    assert name_subjects(map(str, range(5)), limit=3) == "0, 1, 2 and 2 more"


def test_bad_numbers_and_sidecars(tmp_path):
    bad = tmp_path / "participants.tsv"
    bad.write_text("participant_id\tage\nsub-01\t30\nsub-02\tinf\n")
    with pytest.raises(InputError, match=r"'age' .* not a finite number for sub-02"):
        read_participants(bad)
    bad.write_text("participant_id\tage\nsub-01\t30\nsub-02\t40\n")
    (tmp_path / "participants.json").write_text("{not json")
    with pytest.raises(InputError, match="participants sidecar .* is not JSON"):
        read_participants(bad)
    (tmp_path / "participants.json").write_text("[1, 2]")  # not a description
    assert read_participants(bad)["sub-02"] == {"age": 40.0}


def test_bad_tables(tmp_path):
    with pytest.raises(InputError, match="not found"):
        read_participants(tmp_path / "nope.tsv")
    bad = tmp_path / "bad.tsv"
    bad.write_text("id\tage\nsub-01\t3\n")
    with pytest.raises(InputError, match="no participant_id column"):
        read_participants(bad)
    bad.write_text("participant_id,age\nsub-01,3\n")
    with pytest.raises(InputError, match="no participant_id column"):
        read_participants(bad)
    bad.write_text("participant_id\tage\nsub-01\t3\nsub-01\t4\n")
    with pytest.raises(InputError, match="sub-01 is listed twice"):
        read_participants(bad)
    bad.write_text("participant_id\tage\nsub-01\t3\t5\n")
    with pytest.raises(InputError, match="line 2 .* 3 columns"):
        read_participants(bad)


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("data/sub-01/dwi/sub-01_AF_L.trk", "sub-01"),
        ("derivatives/sub-ABC/ses-1/bundles/AF_L.trx", "sub-ABC"),
        ("sub-7_ses-2_desc-CST.tck", "sub-7"),
        ("sub-01/sub-02_AF.trk", "sub-02"),
        ("AF_L.trk", None),
        ("mysub-01/AF_L.trk", None),
    ],
)
def test_subject_from_path(path, expected):
    assert subject_from_path(path) == expected
