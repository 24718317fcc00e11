"""Condition encoding and validation (dipy_tractogen.models.conditions)."""

import json

import numpy as np
import pytest

from dipy_tractogen.errors import ConditionError, InputError
from dipy_tractogen.models.conditions import (
    CategoricalCondition,
    ConditionEncoder,
    ContinuousCondition,
    condition_grid,
    condition_source,
    parse_condition_names,
    parse_condition_request,
    parse_condition_values,
)


@pytest.fixture
def encoder():
    values = {
        "bundle": np.array([0, 1, 2, 1]),
        "age": [20.0, 90.0, 55.0, 30.0],
        "status": ["control", "neurodegeneration", "control", "control"],
        "length": [80.0, 120.0, 100.0, 95.0],
    }
    return ConditionEncoder(
        ["bundle", "age", "status", "length"],
        categories={"bundle": ["arch", "uturn", "fan_1"]},
    ).fit(values)


def test_layout_and_encoding(encoder):
    assert encoder.n_features_ == 3 + 1 + 2 + 1
    assert encoder.slices_["status"] == slice(4, 6)
    assert encoder.columns(kind="continuous") == [3, 6]
    rows = encoder.transform(
        {
            "bundle": ["uturn", "arch"],
            "age": [20.0, 90.0],
            "status": ["neurodegeneration", "control"],
            "length": [100.0, 80.0],
        }
    )
    np.testing.assert_allclose(
        rows,
        [[0, 1, 0, -1, 0, 1, 0.0], [1, 0, 0, 1, 1, 0, -1]],
        atol=1e-6,
    )
    back = encoder.inverse_transform(rows)
    assert list(back["bundle"]) == ["uturn", "arch"]
    assert list(back["status"]) == ["neurodegeneration", "control"]
    np.testing.assert_allclose(back["age"], [20.0, 90.0], atol=1e-4)
    assert encoder.spec("age").unit == "years"
    assert "age [20, 90] years" in encoder.describe()


def test_integer_codes_are_codes_and_strings_names(encoder):
    by_code = encoder.spec("bundle").encode(np.array([2]))
    by_name = encoder.spec("bundle").encode(["fan_1"])
    np.testing.assert_array_equal(by_code, by_name)
    with pytest.raises(ConditionError, match="code 3 is out of range"):
        encoder.spec("bundle").codes(np.array([3]))


def test_config_round_trip_is_json(encoder):
    config = json.loads(json.dumps(encoder.get_config()))
    again = ConditionEncoder.from_config(config)
    assert again.condition_names == encoder.condition_names
    values = {"bundle": ["fan_1"], "age": [42.0], "status": ["control"]}
    values["length"] = [99.0]
    np.testing.assert_array_equal(again.transform(values), encoder.transform(values))
    with pytest.raises(InputError, match="malformed"):
        ConditionEncoder.from_config({"nothing": 1})


def test_validate_refuses_bad_requests(encoder):
    ok = encoder.validate({"age": [30, 50.5], "bundle": "arch"})
    assert ok == {"bundle": ["arch"], "age": [30.0, 50.5]}  # encoder order
    with pytest.raises(ConditionError, match="unknown bundle 'cst'.*arch, uturn"):
        encoder.validate({"bundle": ["arch", "cst"]})
    with pytest.raises(ConditionError, match=r"age 95 is outside .*\[20, 90\] years"):
        encoder.validate({"age": 95})
    assert encoder.validate({"age": 95}, extrapolate=True) == {"age": [95.0]}
    with pytest.raises(ConditionError, match="unknown status"):
        encoder.validate({"status": "sick"}, extrapolate=True)  # never for labels
    with pytest.raises(ConditionError, match="not trained on condition 'sex'"):
        encoder.validate({"sex": "F"})
    with pytest.raises(ConditionError, match="must be a number"):
        encoder.validate({"age": "old"})
    with pytest.raises(ConditionError, match="finite"):
        encoder.validate({"length": float("nan")})


def test_transform_checks(encoder):
    with pytest.raises(ConditionError, match="missing value.*status, length"):
        encoder.transform({"bundle": ["arch"], "age": [30.0]})
    with pytest.raises(ConditionError, match="different numbers of values"):
        encoder.transform(
            {
                "bundle": ["arch", "arch"],
                "age": [30.0],
                "status": ["control"],
                "length": [90.0],
            }
        )
    row = encoder.transform(
        {"bundle": ["arch"], "age": [100.0], "status": ["control"], "length": [90.0]},
        extrapolate=True,
    )
    assert row[0, 3] == pytest.approx(2 * 80 / 70 - 1)


def test_fit_infers_kinds_and_refuses_missing_values():
    enc = ConditionEncoder(["site", "score"]).fit(
        {"site": ["b", "a", "b"], "score": [1.0, 3.0, 2.0]}
    )
    assert isinstance(enc.spec("site"), CategoricalCondition)
    assert enc.spec("site").categories == ("a", "b")
    assert isinstance(enc.spec("score"), ContinuousCondition)
    with pytest.raises(ConditionError, match="no values for condition 'age'"):
        ConditionEncoder(["age"]).fit({"bundle": [0]})
    with pytest.raises(ConditionError, match="missing or non-finite"):
        ConditionEncoder(["age"]).fit({"age": [20.0, np.nan]})
    with pytest.raises(ConditionError, match="unknown bundle"):
        ConditionEncoder(["bundle"], categories={"bundle": ["a"]}).fit(
            {"bundle": ["b"]}
        )
    with pytest.raises(InputError, match="not fitted"):
        ConditionEncoder(["age"]).transform({"age": [1.0]})
    # a constant attribute gets a finite scale
    flat = ConditionEncoder(["age"]).fit({"age": [40.0, 40.0]})
    assert np.isfinite(flat.transform({"age": [40.0]})).all()


def test_parsing_helpers():
    assert parse_condition_names("bundle, age,,age") == ("bundle", "age")
    assert parse_condition_names(None) == ()
    with pytest.raises(ConditionError, match="invalid condition name"):
        parse_condition_names("age;rm")
    assert parse_condition_values("72") == [72.0]
    assert parse_condition_values("30,50,70") == [30.0, 50.0, 70.0]
    assert parse_condition_values("30:70:20") == [30.0, 50.0, 70.0]
    assert parse_condition_values("a,b", kind="categorical") == ["a", "b"]
    assert parse_condition_values(5) == [5.0]
    with pytest.raises(ConditionError, match="cannot read age 'old'"):
        parse_condition_values("old", name="age")
    with pytest.raises(ConditionError, match="start:stop:step"):
        parse_condition_values("70:30:10", name="age")
    assert condition_source("bundle") == "bundle"
    assert condition_source("length") == "streamline"
    assert condition_source("curvature") == "streamline"
    assert condition_source("age") == "subject"
    assert condition_source("handedness") == "subject"


def test_condition_grid_is_the_cartesian_product():
    grid = condition_grid({"bundle": ["a", "b"], "age": [30.0, 50.0, 70.0]})
    assert len(grid) == 6
    assert grid[0] == {"bundle": "a", "age": 30.0}
    assert grid[-1] == {"bundle": "b", "age": 70.0}
    assert condition_grid({}) == [{}]


def test_multi_level_categoricals_are_one_hot():
    """A three-level group, sex and a site coded as strings: one column per
    level, in sorted order, round-tripping through the model's config."""
    values = {
        "group": ["CN", "MCI", "AD", "CN"],
        "sex": ["F", "M", "F", "F"],
        "site": ["2", "1", "3", "1"],
        "age": [60.0, 70.0, 80.0, 65.0],
    }
    enc = ConditionEncoder(["group", "sex", "site", "age"]).fit(values)
    assert enc.spec("group").categories == ("AD", "CN", "MCI")
    assert enc.n_features_ == 3 + 2 + 3 + 1
    rows = enc.transform(values)
    np.testing.assert_array_equal(
        rows[:, :3], [[0, 1, 0], [0, 0, 1], [1, 0, 0], [0, 1, 0]]
    )
    np.testing.assert_array_equal(rows[:, 5:8].argmax(1), [1, 0, 2, 0])
    again = ConditionEncoder.from_config(json.loads(json.dumps(enc.get_config())))
    np.testing.assert_array_equal(again.transform(values), rows)
    assert list(again.inverse_transform(rows)["group"]) == values["group"]
    assert enc.validate({"group": ["MCI", "AD"]}) == {"group": ["MCI", "AD"]}
    with pytest.raises(ConditionError, match="unknown group 'FTD'.*AD, CN, MCI"):
        enc.validate({"group": "FTD"})


def test_parse_condition_request():
    kinds = {"group": "categorical", "age": "continuous", "site": "categorical"}
    got = parse_condition_request(
        ["group=AD,MCI", "age=60:80:10", "site=2"], kinds=kinds
    )
    assert got == {"group": ["AD", "MCI"], "age": [60.0, 70.0, 80.0], "site": ["2"]}
    # one string with several items; unknown names read as their known kind
    assert parse_condition_request("sex=F; length=90", kinds={}) == {
        "sex": ["F"],
        "length": [90.0],
    }
    assert parse_condition_request(None) == {} and parse_condition_request([]) == {}
    for bad, message in [
        (["AD"], "cannot read condition 'AD': write name=value"),
        (["=AD"], "cannot read condition"),
        (["group=AD", "group=CN"], "'group' is given twice"),
        (["group="], "no value given for condition 'group'"),
        (["age=old"], "cannot read age 'old'"),
        (["a$e=3"], "invalid condition name"),
    ]:
        with pytest.raises(ConditionError, match=message):
            parse_condition_request(bad, kinds=kinds)
