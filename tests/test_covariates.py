"""Tests of dipy_tractogen.io.participants."""

import numpy as np
import pytest

from dipy_tractogen.errors import InputError
from dipy_tractogen.io.participants import (
    covariate_categories,
    covariates_for,
    read_participants,
    subject_from_path,
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
    with pytest.raises(InputError, match=r"not in the participants table: sub-09$"):
        covariates_for(["sub-01", "sub-09"], table, "age")
    with pytest.raises(InputError, match=r"'age' is missing \(n/a\).*: sub-03$"):
        covariates_for(["sub-01", "sub-03"], table, "age")
    with pytest.raises(InputError, match="unknown covariate.*'weight'.*has: age"):
        covariates_for(["sub-01"], table, ["weight"])


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
