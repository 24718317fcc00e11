"""dipy_generate_tractogram: options, the per-bundle and conditional paths,
refusals before TensorFlow starts, one-line errors.

The picture and the report of the command are tested in
``test_workflow_view.py``; the library behind it in ``test_generation.py``
and ``test_conditional.py``.
"""

import inspect
import json

import numpy as np
import pytest

from dipy_tractogen.generation.filters import FilterSettings
from dipy_tractogen.workflows.generate import GenerateTractogramFlow

CMD = "dipy_generate_tractogram"


def _defaults(func):
    return {
        name: p.default
        for name, p in inspect.signature(func).parameters.items()
        if p.default is not inspect.Parameter.empty
    }


def test_run_defaults_are_the_library_defaults():
    """DIPY reads the command's defaults from run()'s signature, so they are
    literals there: they must be those of FilterSettings and the sources."""
    from dipy_tractogen.generation.pipeline import generate_tractogram
    from dipy_tractogen.generation.sources import BundleSource, ConditionalSource

    run = _defaults(GenerateTractogramFlow.run)
    settings = FilterSettings()
    as_settings = FilterSettings(
        min_length=run["min_length"],
        max_length=run["max_length"],
        wm_mask=run["wm_mask"] or None,
        min_wm_fraction=run["min_wm_fraction"],
        max_curvature=run["max_curvature"] or None,
        latent_filter=not run["no_latent_filter"],
        latent_percentile=run["latent_percentile"],
        apply_filters=not run["no_filter"],
    )
    assert as_settings == settings
    bundle = _defaults(BundleSource.__init__)
    assert run["sampler"] == bundle["sampler"]
    assert float(run["bandwidth"]) == bundle["bandwidth"]
    conditional = _defaults(ConditionalSource.__init__)
    assert run["latent"] == conditional["latent"]
    assert run["condition_bandwidth"] == conditional["condition_bandwidth"]
    assert run["extrapolate"] == conditional["extrapolate"]
    library = _defaults(generate_tractogram)
    for name in ("n_streamlines", "chunk_size", "budget", "seed", "precision"):
        assert run[name] == library[name], name


def test_short_name_and_option_parsing():
    from dipy.workflows.base import IntrospectiveArgumentParser

    flow = GenerateTractogramFlow()
    assert flow.get_short_name() == "generate_tractogram"
    parser = IntrospectiveArgumentParser()
    parser.add_workflow(flow)  # crashes on a docstring/type mismatch
    assert parser.positional_parameters == []
    outs = [p[0] for p in parser.output_parameters]
    assert outs == ["out_dir", "out_tractogram", "out_snapshot", "out_report"]
    args = parser.parse_args(
        [
            "--n_streamlines",
            "12",
            "--bundle",
            "arch,uturn",
            "--age",
            "30:70:20",
            "--bandwidth",
            "scott",
            "--max_curvature",
            "0.5",
            "--no_latent_filter",
            "--float16",
        ]
    )
    assert args.n_streamlines == 12 and args.bundle == "arch,uturn"
    assert args.age == "30:70:20" and args.bandwidth == "scott"
    assert args.max_curvature == 0.5
    assert args.no_latent_filter is True and args.float16 is True
    assert args.no_filter is False


def _sidecar(folder, stem="generated"):
    return json.loads((folder / f"{stem}.json").read_text())["metadata"]


def test_per_bundle_generation(run_cli, tmp_path):
    """The shipped default model, two bundles, every filter (the latent one
    calibrated for the two bundles only)."""
    from dipy_tractogen.io.tractograms import load_bundles

    args = ["--n_streamlines", 24, "--bundle", "uturn,arch", "--seed", 3]
    args += ["--no_snapshot", "--out_dir", tmp_path]
    assert run_cli(CMD, *args) == 0
    sft, ids, names, _ = load_bundles(tmp_path / "generated.trx")
    assert len(sft.streamlines) == 24
    assert {names[int(i)] for i in np.unique(ids)} == {"arch", "uturn"}
    meta = _sidecar(tmp_path)
    assert meta["conditions"] == {"bundles": ["uturn", "arch"]}
    assert meta["sampler"] == {"name": "kde", "bandwidth": 0.025}
    assert meta["seeds"] == "model" and meta["seed"] == 3
    assert [f["name"] for f in meta["filters"]] == [
        "in_volume",
        "length",
        "white_matter",
        "latent",
    ]
    report = meta["report"]
    assert report["produced"] == report["requested"] and report["complete"]
    assert set(report["produced"]) == {"uturn", "arch"}
    assert (tmp_path / "generated.html").is_file()
    # the same seed writes the same streamlines
    again_args = ["--out_tractogram", "again.trx", "--out_report", "again.html"]
    assert run_cli(CMD, *args, *again_args) == 0
    again, _, _, _ = load_bundles(tmp_path / "again.trx")
    np.testing.assert_array_equal(
        sft.streamlines.get_data(), again.streamlines.get_data()
    )


def test_conditional_generation(run_cli, tmp_path):
    """The shipped cohort model, a sweep over two ages."""
    from dipy.io.streamline import load_tractogram

    args = ["--model", "cohort", "--bundle", "arch", "--age", "30,70"]
    args += ["--status", "control", "--n_streamlines", 20, "--max_curvature", 1000]
    args += ["--no_snapshot", "--out_dir", tmp_path]
    assert run_cli(CMD, *args) == 0
    sft = load_tractogram(
        str(tmp_path / "generated.trx"), "same", bbox_valid_check=False
    )
    assert len(sft) == 20
    dps = sft.data_per_streamline
    assert set(dps) == {"bundle", "condition_age", "condition_status"}
    assert set(np.asarray(dps["bundle"]).ravel()) == {0}  # arch
    ages = np.asarray(dps["condition_age"]).ravel()
    assert sorted(set(np.round(ages, 3))) == [30.0, 70.0]
    meta = _sidecar(tmp_path)
    assert meta["latent"]["source"] == "kde"
    assert meta["conditions"]["request"][1] == {
        "bundle": "arch",
        "age": 70.0,
        "status": "control",
    }
    # the latent filter does not apply to conditional draws
    names = [f["name"] for f in meta["filters"]]
    assert names == ["in_volume", "length", "white_matter", "curvature"]
    assert meta["report"]["requested"] == {
        "bundle=arch, age=30, status=control": 10,
        "bundle=arch, age=70, status=control": 10,
    }


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n_streamlines", "5"], "output exists"),
        (["--model", "cohort", "--age", "75"], "output exists"),
        (["--model", "cohort", "--age", "old", "--force"], "age"),
        (
            ["--model", "cohort", "--age", "75", "--seeds", "x.trx", "--force"],
            "do not apply to conditional generation",
        ),
    ],
)
def test_refused_before_tensorflow_starts(tmp_path, args, message, cli_in_subprocess):
    (tmp_path / "generated.trx").write_bytes(b"keep")
    status, heavy, err = cli_in_subprocess(CMD, *args, "--out_dir", tmp_path)
    assert (status, heavy) == (1, []), err[-2000:]
    errors = [x for x in err.splitlines() if x.startswith(f"{CMD}: error:")]
    assert len(errors) == 1 and message in errors[0], err[-2000:]
    assert (tmp_path / "generated.trx").read_bytes() == b"keep"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--n_streamlines", 0], "n_streamlines must be an integer >= 1, got 0"),
        (["--bundle", "cst"], "unknown bundle 'cst'"),
        (["--sampler", "gmm"], "unknown sampler 'gmm'"),
        (["--precision", "bf16"], "unknown precision 'bf16'"),
        (["--min_wm_fraction", 1.5], "min_wm_fraction must lie in [0, 1], got 1.5"),
        (["--model", "nope.keras"], "not found"),
        (["--model", "cohort", "--latent", "gmm"], "unknown latent source 'gmm'"),
        (["--model", "cohort", "--age", 200], "outside the training range"),
        (["--model", "cohort", "--length", 100], "not trained on condition"),
    ],
)
def test_bad_options_give_one_line(run_cli, cli_error, tmp_path, args, message):
    status = run_cli(CMD, "--n_streamlines", 5, *args, "--out_dir", tmp_path)
    assert status == 1
    assert message in cli_error(CMD)
    assert list(tmp_path.iterdir()) == []
