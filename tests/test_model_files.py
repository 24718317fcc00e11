"""Malformed model files: one ModelError line naming the file and the fault.

Each bad file is a valid tiny model file (a FINTA saved once per module)
with its zip rewritten. The library (``load_model``, and
``model_file_conditions`` for faults in ``config.json``) raises ModelError;
``dipy_generate_tractogram`` and ``dipy_filter_tractogram`` exit 1 with one
``error:`` line, no traceback, and write nothing. Nothing in a file is
executed (``safe_mode=True``).
"""

import io
import json
import zipfile

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from dipy_tractogen.errors import ModelError  # noqa: E402
from dipy_tractogen.models.files import (  # noqa: E402
    load_model,
    model_file_config,
    save_model,
)
from dipy_tractogen.models.seed_bank import model_file_conditions  # noqa: E402

CONDITIONS = {
    "conditions": [
        {"name": "bundle", "kind": "categorical", "categories": ["a", "b"]},
        {"name": "age", "kind": "continuous", "low": 20.0, "high": 80.0},
    ]
}


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A valid tiny model file with a seed bank, and a tractogram to filter."""
    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.models.finta import FintaAutoencoder
    from dipy_tractogen.models.seed_bank import attach_seed_bank
    from dipy_tractogen.phantom import generate_phantom

    keras.utils.set_random_seed(0)
    ph = generate_phantom(counts=3, seed=3)
    model = FintaAutoencoder(latent_dim=4, n_points=64, scale=64.0)
    model.card = {"bundle_names": list(ph.bundle_names), "conditions": CONDITIONS}
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    attach_seed_bank(
        model, ph.streamlines, ph.bundle_ids, ref, wm_mask=np.ones(ph.dimensions)
    )
    folder = tmp_path_factory.mktemp("good")
    path = folder / "good.keras"
    save_model(model, path)
    save_bundles(folder / "in.trk", ph.streamlines, ref, bundle_ids=ph.bundle_ids)
    return path, folder / "in.trk"


def _rewrite(src, dst, *, config=None, bank=None, replace=None, drop=()):
    """Copy the zip ``src`` to ``dst``, changing some members.

    config: callable(dict) -> object written as config.json; bank:
    callable(dict of arrays) -> dict written as the seed bank; replace:
    member -> bytes; drop: members left out.
    """
    replace = dict(replace or {})
    with zipfile.ZipFile(src) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    if config is not None:
        text = json.dumps(config(json.loads(members["config.json"])))
        replace["config.json"] = text.encode()
    if bank is not None:
        with np.load(io.BytesIO(members["assets/seed_bank.npz"])) as data:
            arrays = bank({k: data[k] for k in data.files})
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)  # object arrays pickled: the loader refuses
        replace["assets/seed_bank.npz"] = buffer.getvalue()
    with zipfile.ZipFile(dst, "w") as archive:
        for name, data in members.items():
            if name not in drop:
                archive.writestr(name, replace.get(name, data))


def _set(keys, value):
    """A config edit setting config.json[keys[0]][keys[1]]... to ``value``."""

    def edit(config):
        target = config
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value
        return config

    return edit


def _bank(key, value):
    def edit(arrays):
        arrays[key] = value(arrays) if callable(value) else value
        return arrays

    return edit


def _cut_weights(members):
    return members["model.weights.h5"][:2000]


#: case -> (how to break the file, what the message says); True: a fault of
#: config.json (model_file_conditions sees it too)
CASES = {
    "not_a_zip": (dict(raw=b"hello, not a zip"), "not a zip archive", True),
    "truncated_zip": (dict(cut=0.5), "not a zip archive, or truncated", True),
    "no_config": (dict(drop=("config.json",)), "config.json is missing", True),
    "config_not_json": (
        dict(replace={"config.json": b"{not json"}),
        "config.json is not JSON",
        True,
    ),
    "config_not_utf8": (
        dict(replace={"config.json": b"\xff\xfe\x00"}),
        "config.json is not JSON",
        True,
    ),
    "top_level_list": (
        dict(config=lambda c: []),
        "config.json is a list, expected an object",
        True,
    ),
    "top_level_string": (
        dict(config=lambda c: "model"),
        "config.json is a string, expected an object",
        True,
    ),
    "top_level_number": (
        dict(config=lambda c: 3),
        "config.json is a number, expected an object",
        True,
    ),
    "class_name_not_string": (
        dict(config=_set(["class_name"], 7)),
        "'class_name' is a number, expected a string",
        True,
    ),
    "config_a_string": (
        dict(config=_set(["config"], "x")),
        "config.json: 'config' is a string, expected an object",
        True,
    ),
    "config_missing": (
        dict(config=lambda c: {"class_name": c["class_name"]}),
        "'config' is missing, expected an object",
        True,
    ),
    "conditions_not_object": (
        dict(config=_set(["config", "conditions"], "age")),
        "'config.conditions': it is a string, expected an object",
        True,
    ),
    "conditions_list_not_list": (
        dict(config=_set(["config", "conditions"], {"conditions": {"a": 1}})),
        "'conditions' is an object, expected a list",
        True,
    ),
    "conditions_list_missing": (
        dict(config=_set(["config", "conditions"], {"names": []})),
        "'conditions' is missing, expected a list",
        True,
    ),
    "condition_not_object": (
        dict(config=_set(["config", "conditions"], {"conditions": ["age"]})),
        "condition 0 is a string, expected an object",
        True,
    ),
    "condition_without_name": (
        dict(
            config=_set(
                ["config", "conditions"],
                {"conditions": [{"kind": "continuous", "low": 0, "high": 1}]},
            )
        ),
        "condition 0 has no name",
        True,
    ),
    "condition_without_kind": (
        dict(config=_set(["config", "conditions"], {"conditions": [{"name": "a"}]})),
        "condition 'a' has kind None, expected categorical or continuous",
        True,
    ),
    "condition_unknown_kind": (
        dict(
            config=_set(
                ["config", "conditions"],
                {"conditions": [{"name": "age", "kind": "ordinal"}]},
            )
        ),
        "condition 'age' has kind 'ordinal', expected categorical or continuous",
        True,
    ),
    "categorical_without_categories": (
        dict(
            config=_set(
                ["config", "card", "conditions"],
                {"conditions": [{"name": "status", "kind": "categorical"}]},
            )
        ),
        "'config.card.conditions': categorical condition 'status' has no categories",
        True,
    ),
    "continuous_without_range": (
        dict(
            config=_set(
                ["config", "card", "conditions"],
                {"conditions": [{"name": "age", "kind": "continuous", "low": 1}]},
            )
        ),
        "continuous condition 'age' needs a finite range",
        True,
    ),
    "continuous_infinite_range": (
        dict(
            config=_set(
                ["config", "card", "conditions", "conditions", 1, "high"],
                float("inf"),
            )
        ),
        "continuous condition 'age' needs a finite range",
        True,
    ),
    "card_not_object": (
        dict(config=_set(["config", "card"], [1, 2])),
        "'config.card' is a list, expected an object",
        True,
    ),
    "bank_latents_shape": (
        dict(bank=_bank("latents", lambda a: a["latents"][:, :3])),
        "seed_bank.npz: 'latents' has shape",
        False,
    ),
    "bank_latents_1d": (
        dict(bank=_bank("latents", lambda a: a["latents"][:, 0])),
        "seed_bank.npz: 'latents' has shape",
        False,
    ),
    "bank_labels_length": (
        dict(bank=_bank("labels", lambda a: a["labels"][:-1])),
        "seed_bank.npz: 'labels' has shape",
        False,
    ),
    "bank_labels_dtype": (
        dict(bank=_bank("labels", lambda a: a["labels"].astype(np.float32))),
        "seed_bank.npz: 'labels' has dtype float32, expected integers",
        False,
    ),
    "bank_negative_labels": (
        dict(bank=_bank("labels", lambda a: a["labels"] - 5)),
        "negative bundle ids",
        False,
    ),
    "bank_affine_shape": (
        dict(bank=_bank("affine", np.eye(3))),
        "'affine' has shape (3, 3), expected (4, 4)",
        False,
    ),
    "bank_mask_shape": (
        dict(bank=_bank("wm_mask", np.ones((2, 2, 2), bool))),
        "'wm_mask' has shape (2, 2, 2)",
        False,
    ),
    "bank_voxel_order_dtype": (
        dict(bank=_bank("voxel_order", np.float32(1))),
        "'voxel_order' has dtype float32, expected a string",
        False,
    ),
    "bank_object_array": (
        dict(bank=_bank("labels", np.array([{"a": 1}], dtype=object))),
        "seed_bank.npz is unreadable",
        False,
    ),
    "bank_not_npz": (
        dict(replace={"assets/seed_bank.npz": b"garbage"}),
        "seed_bank.npz is not an .npz archive",
        False,
    ),
    "weights_missing": (
        dict(drop=("model.weights.h5",)),
        "model.weights.h5",
        False,
    ),
    "weights_truncated": (dict(weights=_cut_weights), "cannot load model", False),
}


def _make(case, good_path, folder):
    how, _, _ = CASES[case]
    bad = folder / "bad.keras"
    if "raw" in how:
        bad.write_bytes(how["raw"])
    elif "cut" in how:
        data = good_path.read_bytes()
        bad.write_bytes(data[: int(len(data) * how["cut"])])
    elif "weights" in how:
        with zipfile.ZipFile(good_path) as archive:
            members = {n: archive.read(n) for n in archive.namelist()}
        _rewrite(good_path, bad, replace={"model.weights.h5": how["weights"](members)})
    else:
        _rewrite(good_path, bad, **how)
    return bad


def test_the_good_file_loads(good):
    path, _ = good
    model = load_model(path)
    assert model.condition_encoder.condition_names == ["bundle", "age"]
    assert model_file_conditions(path) == ("FintaAutoencoder", ["bundle", "age"], False)
    assert model_file_config(path)["class_name"] == "FintaAutoencoder"


@pytest.mark.parametrize("case", sorted(CASES))
def test_library_raises_one_model_error_line(case, good, tmp_path):
    _, message, in_config = CASES[case]
    bad = _make(case, good[0], tmp_path)
    calls = [load_model] + ([model_file_conditions] if in_config else [])
    for call in calls:
        with pytest.raises(ModelError) as info:
            call(bad)
        text = str(info.value)
        assert message in text, (call.__name__, text)
        assert str(bad) in text and "\n" not in text


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize(
    "command", ["dipy_generate_tractogram", "dipy_filter_tractogram"]
)
def test_commands_exit_1_with_one_error_line(
    case, command, good, tmp_path, run_cli, capsys
):
    _, message, _ = CASES[case]
    bad = _make(case, good[0], tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    args = ["--model", bad, "--out_dir", out]
    if command == "dipy_filter_tractogram":
        args = [good[1], *args]
    else:
        args += ["--no_snapshot", "--n_streamlines", 10]
    assert run_cli(command, *args) == 1  # another exception would propagate
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"{command}: error:")]
    assert len(lines) == 1, err
    assert message in lines[0] and str(bad) in lines[0]
    assert "Traceback" not in err
    assert list(out.iterdir()) == []
