"""Fuzz the console commands with malformed inputs (issue #16).

Every case runs one real ``dipy_*`` command in a subprocess, in a fresh
output folder, with inputs made from small valid ones (a phantom .trx/.trk/
.tck with its reference NIfTI, a tiny FINTA model file with a seed bank, a
participants table, an HDF5 streamline dataset) and then broken: truncated
files, random bytes, bit flips, zips with a mangled ``config.json`` or
``header.json``, NaN/inf coordinates, empty tractograms, a wrong reference,
unknown bundle labels, participants tables with n/a, missing columns or
duplicate ids, option values that are negative, zero, huge, NaN or text,
unknown names, existing outputs without ``--force``, an output path that is
a directory and (as root, where ``unshare -m`` can mount) a read-only folder.

Each case must end with exit status 0 or 1 (2 for an argparse usage error),
never a signal, a timeout or another status; standard error must hold no
``Traceback``; a non-zero exit prints exactly one ``COMMAND: error:`` line;
a failed run leaves nothing in its output folder (no files, no hidden
``.*.part*`` temporaries, no ``.claim`` files; files that were there before
are unchanged) and a successful one leaves only its declared outputs.
Temporary files a command leaves in its own ``TMPDIR`` are reported too.

Usage::

    python bench/fuzz_commands.py --seed 0 --cases 240 [--jobs 2]
    python bench/fuzz_commands.py --replay fuzz_failures.json CASE[,CASE...]

The plan of cases depends only on ``--seed`` and ``--cases`` (and
``--families``), so a failure is replayed by rebuilding the same plan and
running that one case (its exact command line is in the JSON file too).
"""

import argparse
import concurrent.futures
import fnmatch
import hashlib
import io
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

COMMANDS = (
    "dipy_generate_tractogram",
    "dipy_filter_tractogram",
    "dipy_evaluate_tractogram",
    "dipy_view_tractogram",
    "dipy_build_streamline_dataset",
    "dipy_train_tractoencoder",
    "dipy_generate_phantom",
    "dipy_convert_finta_weights",
)

#: what a successful run of each command may leave in its output folder
DECLARED = {
    "dipy_generate_tractogram": ["generated.*", "*.trx", "*.trk", "*.tck"],
    "dipy_filter_tractogram": ["kept.*", "rejected.*", "*.trx", "*.trk", "*.tck"],
    "dipy_evaluate_tractogram": ["evaluation.*"],
    "dipy_view_tractogram": ["tractogram.png", "*.png"],
    "dipy_build_streamline_dataset": ["streamlines.h5", "*.h5"],
    "dipy_train_tractoencoder": ["model.keras", "model.card.*", "model_*"],
    "dipy_generate_phantom": [
        "phantom.*",
        "reference.nii.gz",
        "wm_mask.nii.gz",
        "participants.*",
        "sub-*",
        "sub-*/*",
    ],
    "dipy_convert_finta_weights": ["finta_published.keras", "finta_published.card.*"],
}

#: the families of cases and their share of the plan
FAMILIES = {
    "tractogram_bytes": 0.17,
    "tractogram_content": 0.15,
    "model_file": 0.08,
    "participants": 0.10,
    "dataset_file": 0.04,
    "options": 0.26,
    "outputs": 0.10,
    "checkpoint": 0.04,
    "valid": 0.06,
}

#: the families that need no model file
LIGHT_FAMILIES = [
    f for f in FAMILIES if f not in ("model_file", "dataset_file", "valid")
]

#: cases that load Keras and run a model are the slow ones: at most this share
#: of each family's cases
HEAVY_SHARE = {
    "tractogram_bytes": 0.05,
    "tractogram_content": 0.1,
    "model_file": 1.0,
    "participants": 0.1,
    "dataset_file": 1.0,
    "options": 0.15,
    "outputs": 0.0,
    "checkpoint": 0.0,
    "valid": 0.5,
}
HEAVY_COMMANDS = (
    "dipy_generate_tractogram",
    "dipy_filter_tractogram",
    "dipy_train_tractoencoder",
)

TIMEOUT_S = 300


# --------------------------------------------------------------- the inputs
def build_inputs(folder, *, model=True):
    """Write the valid small inputs once into ``folder``; return their paths.

    ``model=False``: no model file (it needs Keras, in a subprocess).
    """
    import nibabel as nib

    from dipy_tractogen.io.tractograms import save_bundles
    from dipy_tractogen.phantom import generate_phantom

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    ph = generate_phantom(counts=4, seed=3)
    ref = (ph.affine, ph.dimensions, ph.voxel_sizes, "RAS")
    names = list(ph.bundle_names)
    paths = {"bundle_names": names}
    for ext in ("trx", "trk", "tck"):
        path = folder / f"phantom.{ext}"
        save_bundles(path, ph.streamlines, ref, bundle_ids=ph.bundle_ids,
                     bundle_names=names, force=True)  # fmt: skip
        paths[ext] = path
    image = nib.Nifti1Image(np.zeros(ph.dimensions, np.uint8), ph.affine)
    nib.save(image, folder / "reference.nii.gz")
    paths["reference"] = folder / "reference.nii.gz"
    mask = nib.Nifti1Image(np.ones(ph.dimensions, np.uint8), ph.affine)
    nib.save(mask, folder / "wm_mask.nii.gz")
    paths["wm_mask"] = folder / "wm_mask.nii.gz"
    other = nib.Nifti1Image(np.zeros((7, 9, 5), np.uint8), np.diag([3.0, 2, 5, 1]))
    nib.save(other, folder / "other_reference.nii.gz")
    paths["other_reference"] = folder / "other_reference.nii.gz"
    paths["phantom"] = ph
    paths["ref"] = ref

    cohort = folder / "cohort"
    _run_ok(
        [
            "dipy_generate_phantom",
            "--n_subjects",
            "2",
            "--streamlines_per_bundle",
            "4",
            "--fmt",
            "trk",
            "--seed",
            "1",
            "--out_dir",
            str(cohort),
        ]  # fmt: skip
    )
    paths["participants"] = cohort / "participants.tsv"
    paths["subjects"] = sorted(cohort.glob("sub-*/sub-*_phantom.trk"))
    _run_ok(
        [
            "dipy_build_streamline_dataset",
            *map(str, paths["subjects"]),
            "--participants",
            str(paths["participants"]),
            "--n_points",
            "64",
            "--seed",
            "0",
            "--out_dir",
            str(folder / "dataset"),
        ]  # fmt: skip
    )
    paths["dataset"] = folder / "dataset" / "streamlines.h5"
    paths["model"] = (
        _tiny_model(folder / "tiny.keras", ph, ref, names) if model else None
    )
    paths["checkpoint"] = _wrong_checkpoint(folder / "wrong_layout.pt")
    return paths


def _run_ok(argv):
    res = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    if res.returncode != 0:
        raise RuntimeError(f"{shlex.join(argv)} failed:\n{res.stderr}")


def _tiny_model(path, ph, ref, names):
    """A FINTA with 4 latent dimensions and a seed bank (as tests/ build it)."""
    code = (
        "import sys, pickle, keras\n"
        "from dipy_tractogen.models.files import save_model\n"
        "from dipy_tractogen.models.finta import FintaAutoencoder\n"
        "from dipy_tractogen.models.seed_bank import attach_seed_bank\n"
        "from dipy_tractogen.phantom import generate_phantom\n"
        "import numpy as np\n"
        "keras.utils.set_random_seed(0)\n"
        "ph = generate_phantom(counts=4, seed=3)\n"
        "m = FintaAutoencoder(latent_dim=4, n_points=64, center=(0, 0, 0),"
        " scale=64.0)\n"
        "m.card = {'bundle_names': list(ph.bundle_names)}\n"
        "ref = (ph.affine, ph.dimensions, ph.voxel_sizes, 'RAS')\n"
        "attach_seed_bank(m, ph.streamlines, ph.bundle_ids, ref,"
        " wm_mask=np.ones(ph.dimensions))\n"
        "save_model(m, sys.argv[1])\n"
    )
    # in a subprocess: the fuzzer itself never imports Keras
    res = subprocess.run(
        [sys.executable, "-c", code, str(path)], capture_output=True, text=True
    )
    if res.returncode != 0:
        raise RuntimeError(f"tiny model not written:\n{res.stderr}")
    return path


def _wrong_checkpoint(path):
    """A PyTorch checkpoint that is not FINTA's (None without PyTorch)."""
    try:
        import torch
    except ImportError:
        return None
    torch.save({"state_dict": {"encoder.weight": torch.zeros(3, 2)}}, path)
    return path


# ------------------------------------------------------------ the mutations
def truncated(src, rng):
    data = Path(src).read_bytes()
    return data[: int(len(data) * rng.uniform(0.0, 0.95))]


def random_bytes(rng, *, size=None):
    size = int(rng.integers(0, 4096)) if size is None else size
    return rng.bytes(size)


def bit_flips(src, rng, *, count=None):
    data = bytearray(Path(src).read_bytes())
    count = int(rng.integers(1, 16)) if count is None else count
    for pos in rng.integers(0, len(data), size=count):
        data[pos] ^= 1 << int(rng.integers(0, 8))
    return bytes(data)


def _zip_members(src):
    with zipfile.ZipFile(src) as archive:
        return {
            info.filename: archive.read(info.filename) for info in archive.infolist()
        }


def _write_zip(members):
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


JSON_EDITS = (
    "not_json",
    "not_utf8",
    "list",
    "number",
    "drop_key",
    "null_value",
    "wrong_type",
    "huge_number",
    "nan",
    "empty_object",
)


def mangled_json_member(src, member, rng):
    """The zip ``src`` with its JSON ``member`` broken (or missing)."""
    members = _zip_members(src)
    member = next((m for m in members if m.endswith(member)), member)
    edit = JSON_EDITS[int(rng.integers(len(JSON_EDITS)))]
    text = members.get(member, b"{}")
    try:
        config = json.loads(text)
    except ValueError:
        config = {}
    if edit == "not_json":
        data = text[: max(1, len(text) // 2)]
    elif edit == "not_utf8":
        data = b"\xff\xfe\x00\x81"
    elif edit == "list":
        data = json.dumps([config]).encode()
    elif edit == "number":
        data = b"42"
    elif edit == "empty_object":
        data = b"{}"
    else:
        keys = list(config) if isinstance(config, dict) else []
        if not keys:
            data = b"{}"
        else:
            key = keys[int(rng.integers(len(keys)))]
            if edit == "drop_key":
                config.pop(key)
            elif edit == "null_value":
                config[key] = None
            elif edit == "wrong_type":
                config[key] = "text" if not isinstance(config[key], str) else [1, 2]
            elif edit == "huge_number":
                config[key] = 10**30
            else:
                config[key] = float("nan")
            data = json.dumps(config).encode()
    members[member] = data
    if edit == "drop_key" and rng.random() < 0.3:
        members.pop(member)  # the whole member missing
    return _write_zip(members), f"{member}:{edit}"


def dropped_member(src, rng):
    members = _zip_members(src)
    name = sorted(members)[int(rng.integers(len(members)))]
    members.pop(name)
    return _write_zip(members), name


def tractogram_with(inputs, path, kind, rng):
    """A tractogram whose content is odd (written without validation)."""
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    ph = inputs["phantom"]
    ref_img = str(inputs["reference"])
    lines = [np.array(s, np.float32) for s in ph.streamlines]
    if kind == "nan":
        i = int(rng.integers(len(lines)))
        lines[i][int(rng.integers(len(lines[i])))] = np.nan
    elif kind == "inf":
        i = int(rng.integers(len(lines)))
        lines[i][0, int(rng.integers(3))] = np.inf * rng.choice([-1, 1])
    elif kind == "huge":
        lines[0] = lines[0] * np.float32(1e30)
    elif kind == "empty":
        lines = []
    elif kind == "single_points":
        lines = [s[:1] for s in lines]
    elif kind == "outside_box":
        lines = [s + np.float32(500.0) for s in lines]
    elif kind == "one_streamline":
        lines = lines[:1]
    sft = StatefulTractogram(lines, ref_img, Space.RASMM)
    save_tractogram(sft, str(path), bbox_valid_check=False)


def labelled_tractogram(inputs, path, kind, rng):
    """The phantom as a .trx with bundle labels that are wrong (written with
    DIPY, which does not check them)."""
    from dipy.io.stateful_tractogram import Space, StatefulTractogram
    from dipy.io.streamline import save_tractogram

    ph = inputs["phantom"]
    ids = np.asarray(ph.bundle_ids).astype(np.float32)
    if kind == "id_out_of_range":
        ids[int(rng.integers(len(ids)))] = len(inputs["bundle_names"]) + 5
    elif kind == "negative_id":
        ids[0] = -3
    elif kind == "fractional_id":
        ids[0] = 0.5
    else:  # nan_id
        ids[-1] = np.nan
    lines = [np.array(s, np.float32) for s in ph.streamlines]
    sft = StatefulTractogram(
        lines,
        str(inputs["reference"]),
        Space.RASMM,
        data_per_streamline={"bundle": ids.reshape(-1, 1)},
    )
    save_tractogram(sft, str(path), bbox_valid_check=False)


def participants_text(src, kind, rng):
    lines = Path(src).read_text().splitlines()
    header, rows = lines[0].split("\t"), [r.split("\t") for r in lines[1:]]
    col = {name: i for i, name in enumerate(header)}
    if kind == "na_age":
        rows[int(rng.integers(len(rows)))][col["age"]] = "n/a"
    elif kind == "text_age":
        rows[0][col["age"]] = "old"
    elif kind == "nan_age":
        rows[0][col["age"]] = rng.choice(["nan", "inf", "-inf", "1e400", "-5"])
    elif kind == "na_status":
        rows[-1][col["status"]] = "n/a"
    elif kind == "missing_id_column":
        return _tsv([h for h in header if h != "participant_id"],
                    [[v for i, v in enumerate(r) if i != col["participant_id"]]
                     for r in rows])  # fmt: skip
    elif kind == "missing_age_column":
        return _tsv([h for h in header if h != "age"],
                    [[v for i, v in enumerate(r) if i != col["age"]]
                     for r in rows])  # fmt: skip
    elif kind == "duplicate_ids":
        rows.append(list(rows[0]))
    elif kind == "unknown_ids":
        for r in rows:
            r[col["participant_id"]] = "sub-" + r[col["participant_id"]][4:] + "9"
    elif kind == "header_only":
        rows = []
    elif kind == "empty":
        return ""
    elif kind == "ragged":
        rows[0] = rows[0][:1]
    elif kind == "commas":
        return "\n".join(",".join(r) for r in [header, *rows]) + "\n"
    elif kind == "bom_crlf":
        return "\ufeff" + _tsv(header, rows).replace("\n", "\r\n")
    elif kind == "binary":
        return None
    return _tsv(header, rows)


PARTICIPANT_KINDS = (
    "na_age", "text_age", "nan_age", "na_status", "missing_id_column",
    "missing_age_column", "duplicate_ids", "unknown_ids", "header_only",
    "empty", "ragged", "commas", "bom_crlf", "binary",
)  # fmt: skip


def _tsv(header, rows):
    return "\n".join("\t".join(r) for r in [header, *rows]) + "\n"


# ----------------------------------------------------------------- the cases
@dataclass
class Case:
    """One command line with the files it needs.

    ``argv`` may hold ``{in}`` (the valid inputs), ``{case}`` (the case's own
    inputs) and ``{out}`` (the output folder). ``files`` maps names in
    ``{case}`` to bytes or to a callable(path) writing the file; ``existing``
    maps names in ``{out}`` to bytes written before the run; ``out_is`` is
    "dir" (normal), "readonly" (a read-only mount) or "file" (a file where
    the folder should be).
    """

    id: int
    family: str
    what: str
    argv: list
    files: dict = field(default_factory=dict)
    existing: dict = field(default_factory=dict)
    out_is: str = "dir"
    heavy: bool = False
    expect: str = "any"  # "any", "fail" or "ok"


def _cmd_for_tractogram(rng, path, *, light_only=False, reference=None):
    """A command that reads the tractogram ``path``."""
    choices = ["view", "evaluate_gen", "evaluate_real", "dataset"]
    if not light_only:
        choices.append("filter")
    kind = choices[int(rng.integers(len(choices)))]
    ref = ["--reference", reference] if reference else []
    if kind == "view":
        return ["dipy_view_tractogram", path, *ref, "--out_dir", "{out}"], False
    if kind == "evaluate_gen":
        return ["dipy_evaluate_tractogram", path, "{in}/phantom.trk", *ref,
                "--out_dir", "{out}"], False  # fmt: skip
    if kind == "evaluate_real":
        return ["dipy_evaluate_tractogram", "{in}/phantom.trx", path, *ref,
                "--out_dir", "{out}"], False  # fmt: skip
    if kind == "dataset":
        return ["dipy_build_streamline_dataset", path, *ref, "--n_points", "16",
                "--out_dir", "{out}"], False  # fmt: skip
    return ["dipy_filter_tractogram", path, "--model", "{in}/tiny.keras", *ref,
            "--out_dir", "{out}"], True  # fmt: skip


def _ext(rng):
    return ["trx", "trk", "tck"][int(rng.integers(3))]


def family_tractogram_bytes(cid, rng, inputs):
    ext = _ext(rng)
    src = inputs[ext]
    how = ["truncated", "random", "bitflip", "empty_file", "wrong_ext"]
    if ext == "trx":
        how += ["trx_header", "trx_member", "trx_header"]
    how = how[int(rng.integers(len(how)))]
    if how == "truncated":
        data = truncated(src, rng)
    elif how == "random":
        data = random_bytes(rng)
    elif how == "bitflip":
        data = bit_flips(src, rng)
    elif how == "empty_file":
        data = b""
    elif how == "wrong_ext":
        other = {"trx": "trk", "trk": "tck", "tck": "trx"}[ext]
        data = Path(inputs[other]).read_bytes()
    elif how == "trx_header":
        data, detail = mangled_json_member(src, "header.json", rng)
        how = f"trx_header {detail}"
    else:
        data, detail = dropped_member(src, rng)
        how = f"trx_member -{detail}"
    name = f"bad.{ext}"
    ref = "{in}/reference.nii.gz" if ext == "tck" else None
    argv, heavy = _cmd_for_tractogram(rng, "{case}/" + name, reference=ref)
    return Case(cid, "tractogram_bytes", f"{ext} {how}", argv, {name: data},
                heavy=heavy)  # fmt: skip


def family_tractogram_content(cid, rng, inputs):
    kinds = ["nan", "inf", "huge", "empty", "single_points", "outside_box",
             "one_streamline", "id_out_of_range", "negative_id",
             "fractional_id", "nan_id", "wrong_reference",
             "missing_reference", "unknown_bundle"]  # fmt: skip
    kind = kinds[int(rng.integers(len(kinds)))]
    ext = _ext(rng)
    name = f"odd.{ext}"
    path = "{case}/" + name
    ref = "{in}/reference.nii.gz" if ext == "tck" else None
    files = {}
    if kind in ("nan", "inf", "huge", "empty", "single_points", "outside_box",
                "one_streamline"):  # fmt: skip
        sub = int(rng.integers(2**31))
        files[name] = lambda p, k=kind, s=sub: tractogram_with(
            inputs, p, k, np.random.default_rng(s)
        )
    elif kind in ("id_out_of_range", "negative_id", "fractional_id",
                  "nan_id"):  # fmt: skip
        ext = "trx"
        name, path, ref = "odd.trx", "{case}/odd.trx", None
        files[name] = lambda p, k=kind: labelled_tractogram(
            inputs, p, k, np.random.default_rng(cid)
        )
    elif kind == "wrong_reference":
        path, ref = "{in}/phantom." + ext, "{in}/other_reference.nii.gz"
    elif kind == "missing_reference":
        path, ref = "{in}/phantom.tck", None
    if kind == "unknown_bundle":
        argv = ["dipy_generate_tractogram", "--model", "{in}/tiny.keras",
                "--bundle", rng.choice(["NOPE", "AF_L,XX", ",", "  "]),
                "--n_streamlines", "5", "--no_snapshot",
                "--out_dir", "{out}"]  # fmt: skip
        return Case(cid, "tractogram_content", kind, argv, heavy=True)
    if kind == "wrong_reference" and rng.random() < 0.3:
        argv = ["dipy_view_tractogram", path, "--reference", ref, "--color_by",
                "bundle", "--out_dir", "{out}"]  # fmt: skip
        heavy = False
    else:
        argv, heavy = _cmd_for_tractogram(rng, path, reference=ref)
    return Case(cid, "tractogram_content", f"{ext} {kind}", argv, files,
                heavy=heavy)  # fmt: skip


def family_model_file(cid, rng, inputs):
    src = inputs["model"]
    how = ["truncated", "random", "bitflip", "config", "config", "card",
           "dropped", "empty_file", "not_zip_text"]  # fmt: skip
    how = how[int(rng.integers(len(how)))]
    if how == "truncated":
        data = truncated(src, rng)
    elif how == "random":
        data = random_bytes(rng)
    elif how == "bitflip":
        data = bit_flips(src, rng)
    elif how == "config":
        data, detail = mangled_json_member(src, "config.json", rng)
        how = f"config {detail}"
    elif how == "card":
        members = _zip_members(src)
        names = [m for m in members if m.endswith(".json") and m != "config.json"]
        member = names[int(rng.integers(len(names)))] if names else "metadata.json"
        data, detail = mangled_json_member(src, member, rng)
        how = f"member {detail}"
    elif how == "dropped":
        data, detail = dropped_member(src, rng)
        how = f"dropped {detail}"
    elif how == "empty_file":
        data = b""
    else:
        data = b"this is not a model\n"
    use = rng.choice(["generate", "filter", "train", "generate"])
    model = "{case}/bad.keras"
    if use == "generate":
        argv = ["dipy_generate_tractogram", "--model", model, "--n_streamlines",
                "5", "--no_snapshot", "--seed", "1", "--out_dir", "{out}"]  # fmt: skip
    elif use == "filter":
        argv = ["dipy_filter_tractogram", "{in}/phantom.trx", "--model", model,
                "--out_dir", "{out}"]  # fmt: skip
    else:
        argv = ["dipy_train_tractoencoder", "{in}/dataset/streamlines.h5",
                "--model", model, "--epochs", "1", "--batch_size", "8",
                "--n_points", "64", "--no_report", "--out_dir", "{out}"]  # fmt: skip
    # a fault Keras has to find (weights, bit flips) loads Keras: slow
    heavy = how.startswith(("bitflip", "dropped")) or use == "train"
    return Case(cid, "model_file", f"{use} {how}", argv, {"bad.keras": data},
                heavy=heavy)  # fmt: skip


def family_participants(cid, rng, inputs):
    kind = PARTICIPANT_KINDS[int(rng.integers(len(PARTICIPANT_KINDS)))]
    text = participants_text(inputs["participants"], kind, rng)
    data = random_bytes(rng, size=300) if text is None else text.encode()
    subjects = [str(p) for p in inputs["subjects"]]
    if rng.random() < 0.85:
        argv = ["dipy_build_streamline_dataset", *subjects, "--participants",
                "{case}/participants.tsv", "--n_points", "16",
                "--out_dir", "{out}"]  # fmt: skip
        heavy = False
    else:
        argv = ["dipy_train_tractoencoder", "{in}/dataset/streamlines.h5",
                "--participants", "{case}/participants.tsv", "--condition_on",
                "age", "--epochs", "1", "--batch_size", "8", "--n_points", "64",
                "--latent_dim", "4", "--no_report", "--out_dir", "{out}"]  # fmt: skip
        heavy = True
    return Case(cid, "participants", kind, argv, {"participants.tsv": data},
                heavy=heavy)  # fmt: skip


def family_dataset_file(cid, rng, inputs):
    src = inputs["dataset"]
    how = ["truncated", "random", "bitflip", "empty_file", "tractogram"]
    how = how[int(rng.integers(len(how)))]
    if how == "truncated":
        data = truncated(src, rng)
    elif how == "random":
        data = random_bytes(rng)
    elif how == "bitflip":
        data = bit_flips(src, rng, count=int(rng.integers(1, 64)))
    elif how == "empty_file":
        data = b""
    else:
        data = Path(inputs["trx"]).read_bytes()
    argv = ["dipy_train_tractoencoder", "{case}/bad.h5", "--epochs", "1",
            "--batch_size", "8", "--n_points", "64", "--latent_dim", "4",
            "--no_report", "--out_dir", "{out}"]  # fmt: skip
    return Case(
        cid, "dataset_file", how, argv, {"bad.h5": data}, heavy=how == "bitflip"
    )


#: odd values for options; a value is drawn from those of its kind and from any
ODD = {
    "int": [
        "-1",
        "0",
        "-2147483649",
        "99999999999999999999",
        "1e3",
        "3.5",
        "abc",
        "",
        "0x10",
        "nan",
    ],  # fmt: skip
    "float": [
        "-1",
        "0",
        "nan",
        "inf",
        "-inf",
        "1e308",
        "1e-320",
        "abc",
        "",
        "-0",
        "1e400",
    ],  # fmt: skip
    "name": ["bogus", "", " ", "../..", "NaN", "\u00e9t\u00e9", "a" * 300, "-x"],
    "path": [
        "{case}/missing.file",
        "{in}",
        "/dev/null",
        "",
        "{in}/tiny.keras",
        "{in}/phantom.trx",
    ],  # fmt: skip
}

#: per command: the base command line (a valid run) and its options (kind)
OPTIONS = {
    "dipy_generate_tractogram": (
        [
            "--model",
            "{in}/tiny.keras",
            "--n_streamlines",
            "5",
            "--no_snapshot",
            "--seed",
            "1",
        ],  # fmt: skip
        {
            "--n_streamlines": "int",
            "--seed": "int",
            "--chunk_size": "int",
            "--budget": "float",
            "--min_length": "float",
            "--max_length": "float",
            "--max_curvature": "float",
            "--min_wm_fraction": "float",
            "--latent_percentile": "float",
            "--condition_bandwidth": "float",
            "--bandwidth": "name",
            "--sampler": "name",
            "--precision": "name",
            "--bundle": "name",
            "--age": "name",
            "--status": "name",
            "--length": "name",
            "--latent": "name",
            "--seeds": "path",
            "--wm_mask": "path",
            "--reference": "path",
            "--model": "path",
        },  # fmt: skip
        True,
    ),
    "dipy_filter_tractogram": (
        ["{in}/phantom.trx", "--model", "{in}/tiny.keras"],
        {
            "--percentile": "float",
            "--min_length": "float",
            "--max_length": "float",
            "--min_wm_fraction": "float",
            "--wm_mask": "path",
            "--implausible": "path",
            "--reference": "path",
            "--model": "name",
        },  # fmt: skip
        True,
    ),
    "dipy_evaluate_tractogram": (
        ["{in}/phantom.trx", "{in}/phantom.trk"],
        {
            "--plausibility_mm": "float",
            "--novelty_mm": "float",
            "--coverage_mm": "float",
            "--max_streamlines": "int",
            "--seed": "int",
            "--train": "path",
            "--reference": "path",
        },  # fmt: skip
        False,
    ),
    "dipy_view_tractogram": (
        ["{in}/phantom.trx"],
        {
            "--max_streamlines": "int",
            "--width": "int",
            "--height": "int",
            "--color_by": "name",
            "--view": "name",
            "--renderer": "name",
            "--compare": "path",
            "--reference": "path",
        },  # fmt: skip
        False,
    ),
    "dipy_build_streamline_dataset": (
        ["{in}/phantom.trk", "--n_points", "16"],
        {
            "--n_points": "int",
            "--seed": "int",
            "--valid_fraction": "float",
            "--test_fraction": "float",
            "--split_by": "name",
            "--bundle_from": "name",
            "--participants": "path",
            "--reference": "path",
        },  # fmt: skip
        False,
    ),
    "dipy_train_tractoencoder": (
        [
            "{in}/dataset/streamlines.h5",
            "--epochs",
            "1",
            "--batch_size",
            "8",
            "--n_points",
            "64",
            "--latent_dim",
            "4",
            "--no_report",
        ],  # fmt: skip
        {
            "--epochs": "int",
            "--batch_size": "int",
            "--latent_dim": "int",
            "--n_points": "int",
            "--early_stopping": "int",
            "--seed": "int",
            "--learning_rate": "float",
            "--max_learning_rate": "float",
            "--weight_decay": "float",
            "--valid_fraction": "float",
            "--max_minutes": "float",
            "--beta": "float",
            "--model": "name",
            "--precision": "name",
            "--condition_on": "name",
            "--participants": "path",
            "--wm_mask": "path",
        },  # fmt: skip
        True,
    ),
    "dipy_generate_phantom": (
        ["--streamlines_per_bundle", "3"],
        {
            "--seed": "int",
            "--age": "float",
            "--n_subjects": "int",
            "--streamlines_per_bundle": "int",
            "--status_fraction": "float",
            "--status": "name",
            "--cohort_design": "name",
            "--fmt": "name",
        },  # fmt: skip
        False,
    ),
    "dipy_convert_finta_weights": (
        ["{in}/wrong_layout.pt"],
        {
            "--reference": "path",
            "--md5": "name",
            "--bundle_names": "name",
            "--seeds": "path",
        },  # fmt: skip
        False,
    ),
}


def _set_option(argv, option, value):
    argv = list(argv)
    if option in argv:
        argv[argv.index(option) + 1] = value
    else:
        argv += [option, value]
    return argv


def family_options(cid, rng, inputs, *, allow_heavy=True):
    names = [c for c in OPTIONS if allow_heavy or not OPTIONS[c][2]]
    command = names[int(rng.integers(len(names)))]
    base, options, model_using = OPTIONS[command]
    argv = list(base)
    picked = []
    for _ in range(int(rng.integers(1, 3))):
        option = list(options)[int(rng.integers(len(options)))]
        kind = options[option]
        pool = ODD[kind] + (ODD["name"][:2] if kind != "name" else [])
        value = pool[int(rng.integers(len(pool)))]
        if rng.random() < 0.08:  # an option the command does not have
            option = "--no_such_option"
        argv = _set_option(argv, option, value)
        picked.append(f"{option}={value!r}")
    if command == "dipy_generate_tractogram" and rng.random() < 0.25:
        argv = _set_option(argv, "--n_streamlines",
                           rng.choice(["10000000000", "2147483648",
                                       "1e12"]))  # fmt: skip
        picked.append("--n_streamlines=huge")
    if command == "dipy_convert_finta_weights" and inputs["checkpoint"] is None:
        argv[0] = "{case}/missing.pt"
    argv = [command, *argv, "--out_dir", "{out}"]
    return Case(cid, "options", f"{command[5:]} {' '.join(picked)}", argv,
                heavy=model_using)  # fmt: skip


def family_outputs(cid, rng, inputs):
    light = [c for c in OPTIONS if not OPTIONS[c][2]]
    command = light[int(rng.integers(len(light)))]
    base = OPTIONS[command][0]
    first = {
        "dipy_evaluate_tractogram": "evaluation.json",
        "dipy_view_tractogram": "tractogram.png",
        "dipy_build_streamline_dataset": "streamlines.h5",
        "dipy_generate_phantom": "phantom.trx",
        "dipy_convert_finta_weights": "finta_published.keras",
    }[command]
    how = ["existing", "existing_hidden_part", "directory", "out_dir_is_file",
           "readonly", "nested_missing"]  # fmt: skip
    how = how[int(rng.integers(len(how)))]
    argv = [command, *base, "--out_dir", "{out}"]
    case = Case(cid, "outputs", f"{command[5:]} {how}", argv)
    if how == "existing":
        case.existing = {first: b"keep me\n"}
        case.expect = "fail"
    elif how == "existing_hidden_part":
        # a stale temporary of an ended run (pid 999999999) is cleaned up
        case.existing = {f".{first}.part999999999": b"stale"}
    elif how == "directory":
        case.existing = {first + "/": b""}
        case.expect = "fail"
    elif how == "out_dir_is_file":
        case.out_is = "file"
        case.expect = "fail"
    elif how == "readonly":
        case.out_is = "readonly"
        case.expect = "fail"
    else:
        case.argv = [command, *base, "--out_dir", "{out}/a/b"]
    return case


def family_checkpoint(cid, rng, inputs):
    how = ["random", "truncated", "empty_file", "a_model_file", "text",
           "missing", "wrong_layout"]  # fmt: skip
    how = how[int(rng.integers(len(how)))]
    files = {}
    path = "{case}/finta.pt"
    if how == "random":
        files["finta.pt"] = random_bytes(rng)
    elif how == "truncated" and inputs["checkpoint"] is not None:
        files["finta.pt"] = truncated(inputs["checkpoint"], rng)
    elif how == "truncated":
        files["finta.pt"] = random_bytes(rng, size=10)
    elif how == "empty_file":
        files["finta.pt"] = b""
    elif how == "a_model_file":
        path = "{in}/tiny.keras"
    elif how == "text":
        files["finta.pt"] = b"state_dict = {}\n"
    elif how == "missing":
        path = "{case}/missing.pt"
    else:
        path = "{in}/wrong_layout.pt" if inputs["checkpoint"] else path
        files = {} if inputs["checkpoint"] else {"finta.pt": b"\x80\x04N."}
    argv = ["dipy_convert_finta_weights", path, "--out_dir", "{out}"]
    return Case(cid, "checkpoint", how, argv, files)


def family_valid(cid, rng, inputs):
    kinds = ["view", "evaluate", "dataset", "phantom", "generate", "filter"]
    kind = kinds[cid % len(kinds)]
    argv = {
        "view": ["dipy_view_tractogram", "{in}/phantom.trk"],
        "evaluate": [
            "dipy_evaluate_tractogram",
            "{in}/phantom.trx",
            "{in}/phantom.trk",
        ],  # fmt: skip
        "dataset": [
            "dipy_build_streamline_dataset",
            "{in}/phantom.tck",
            "--reference",
            "{in}/reference.nii.gz",
            "--n_points",
            "16",
        ],  # fmt: skip
        "phantom": [
            "dipy_generate_phantom",
            "--streamlines_per_bundle",
            "3",
            "--seed",
            str(int(rng.integers(1000))),
        ],  # fmt: skip
        # an untrained model: its streamlines would not pass the filters
        "generate": [
            "dipy_generate_tractogram",
            "--model",
            "{in}/tiny.keras",
            "--n_streamlines",
            "10",
            "--seed",
            "2",
            "--no_filter",
        ],  # fmt: skip
        "filter": [
            "dipy_filter_tractogram",
            "{in}/phantom.trx",
            "--model",
            "{in}/tiny.keras",
        ],  # fmt: skip
    }[kind]
    return Case(cid, "valid", kind, [*argv, "--out_dir", "{out}"],
                heavy=kind in ("generate", "filter"), expect="ok")  # fmt: skip


GENERATORS = {
    "tractogram_bytes": family_tractogram_bytes,
    "tractogram_content": family_tractogram_content,
    "model_file": family_model_file,
    "participants": family_participants,
    "dataset_file": family_dataset_file,
    "options": family_options,
    "outputs": family_outputs,
    "checkpoint": family_checkpoint,
    "valid": family_valid,
}


def plan_cases(seed, count, inputs, *, families=None, light=False):
    """The cases of a run: the same for the same seed, count and families.

    ``light``: no model-using case (and by default no family that needs the
    model file), for a quick run without Keras.
    """
    families = list(families or (LIGHT_FAMILIES if light else FAMILIES))
    weights = np.array([FAMILIES[f] for f in families], float)
    quotas = np.floor(weights / weights.sum() * count).astype(int)
    for i in np.argsort(-weights)[: count - quotas.sum()]:
        quotas[i] += 1
    order = [f for f, q in zip(families, quotas, strict=True) for _ in range(q)]
    # interleaved, so that the share of model-using cases spreads over families
    order = [order[i] for i in np.random.default_rng([seed, 7]).permutation(count)]
    max_heavy = {
        f: int(np.ceil(HEAVY_SHARE[f] * q))
        for f, q in zip(families, quotas, strict=True)
    }
    if light:
        max_heavy = dict.fromkeys(families, 0)
    cases, heavy = [], dict.fromkeys(families, 0)
    for cid, family in enumerate(order):
        for attempt in range(50):
            rng = np.random.default_rng([seed, cid, attempt])
            case = GENERATORS[family](cid, rng, inputs)
            case.heavy = case.heavy or case.argv[0] in HEAVY_COMMANDS
            if not case.heavy or heavy[family] < max_heavy[family]:
                break
        else:  # only heavy ones drawn: an option case of a light command
            case = family_options(cid, rng, inputs, allow_heavy=False)
        heavy[family] += case.heavy
        cases.append(case)
    return cases


# ------------------------------------------------------------ running a case
def _fill(arg, inputs_dir, case_dir, out_dir):
    return (
        arg.replace("{in}", str(inputs_dir))
        .replace("{case}", str(case_dir))
        .replace("{out}", str(out_dir))
    )


def _digest(path):
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


def _listing(folder):
    folder = Path(folder)
    if not folder.is_dir():
        return []
    return sorted(
        str(p.relative_to(folder)) + ("/" if p.is_dir() else "")
        for p in folder.rglob("*")
    )


def can_mount_readonly():
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o ro,size=1m tmpfs /mnt"],
        capture_output=True,
    )
    return res.returncode == 0


def prepare(case, inputs_dir, work):
    """Write the case's files; return (argv, out_dir, tmp_dir, before)."""
    case_dir = Path(work) / f"case{case.id:04d}"
    if case_dir.exists():
        shutil.rmtree(case_dir)
    inputs = case_dir / "in"
    out = case_dir / "out"
    tmp = case_dir / "tmp"
    for folder in (inputs, out, tmp):
        folder.mkdir(parents=True)
    for name, data in case.files.items():
        if callable(data):
            data(inputs / name)
        else:
            (inputs / name).write_bytes(data)
    before = {}
    for name, data in case.existing.items():
        if name.endswith("/"):
            (out / name).mkdir()
            before[name] = "dir"
        else:
            (out / name).write_bytes(data)
            before[name] = hashlib.md5(data).hexdigest()
    if case.out_is == "file":
        out.rmdir()
        out.write_bytes(b"a file, not a folder\n")
    argv = [_fill(a, inputs_dir, inputs, out) for a in case.argv]
    return argv, out, tmp, before


def run_case(case, inputs_dir, work, *, timeout=TIMEOUT_S):
    """Run one case; return its result (a dict, ``problems`` empty if passed)."""
    try:
        argv, out, tmp, before = prepare(case, inputs_dir, work)
    except Exception as exc:  # a mutation the writers refused: no run
        return {
            "case": case.id, "family": case.family, "what": case.what,
            "command": shlex.join(case.argv), "readonly": False,
            "status": None, "seconds": 0.0, "error": "", "stderr_tail": "",
            "problems": [], "left_in_tmpdir": [],
            "skipped": f"inputs not built: {type(exc).__name__}: {exc}"[:300],
        }  # fmt: skip
    command = argv[0]
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONHASHSEED="0")
    env.setdefault("OMP_NUM_THREADS", "1")
    env.setdefault("TF_NUM_INTEROP_THREADS", "1")
    env.setdefault("TF_NUM_INTRAOP_THREADS", "1")
    run_argv = argv
    if case.out_is == "readonly":
        script = (
            'mount -t tmpfs -o ro,size=1m tmpfs "$0" || exit 97; "$@"; rc=$?; '
            'echo "@@LISTING@@" >&2; ls -A "$0" >&2; exit $rc'
        )
        run_argv = ["unshare", "-m", "sh", "-c", script, str(out), *argv]
    start = time.monotonic()
    problems = []
    try:
        res = subprocess.run(
            run_argv, capture_output=True, text=True, env=env, timeout=timeout,
            errors="replace",
        )  # fmt: skip
        rc, stderr = res.returncode, res.stderr
    except subprocess.TimeoutExpired as exc:
        rc = None
        stderr = exc.stderr.decode(errors="replace") if exc.stderr else ""
        problems.append(f"timed out after {timeout} s")
    seconds = time.monotonic() - start
    listing = _listing(out) if case.out_is != "file" else []
    if case.out_is == "readonly" and "@@LISTING@@" in stderr:
        stderr, tail = stderr.split("@@LISTING@@", 1)
        listing = sorted(tail.split())
        if rc == 97:
            problems.append("read-only mount failed")
    if rc is not None:
        if rc < 0 or rc > 128:
            problems.append(f"killed by a signal (status {rc})")
        elif rc not in (0, 1, 2):
            problems.append(f"exit status {rc}")
    if "Traceback" in stderr:
        problems.append("traceback on standard error")
    errors = [ln for ln in stderr.splitlines() if ln.startswith(f"{command}: error:")]
    if rc not in (None, 0) and len(errors) != 1:
        problems.append(f"{len(errors)} '{command}: error:' lines, expected 1")
    if rc == 2 and "usage:" not in stderr:
        problems.append("exit status 2 without a usage message")
    if rc == 0 and errors:
        problems.append("exit status 0 with an error line")
    if case.expect == "fail" and rc == 0:
        problems.append("succeeded where it must fail")
    if case.expect == "ok" and rc != 0:
        problems.append("failed on a valid input")
    # what the run left in its output folder
    hidden = [
        p
        for p in listing
        if any(part.startswith(".") for part in p.split("/") if part)
        and p.rstrip("/") not in before
    ]
    if hidden:
        problems.append(f"hidden files left: {hidden}")
    if case.out_is == "dir":
        for name, digest in before.items():
            path = out / name
            if digest == "dir":
                if not path.is_dir():
                    problems.append(f"existing folder {name} was removed")
            elif not path.is_file() or _digest(path) != digest:
                problems.append(f"existing file {name} was changed or removed")
    new = [p for p in listing if p not in before and p.rstrip("/") not in before]
    new = [p for p in new if p not in hidden]
    if rc not in (None, 0):
        files = [p for p in new if not p.endswith("/")]
        if files:
            problems.append(f"failed run left files: {files}")
    elif rc == 0:
        declared = DECLARED[command]
        odd = [
            p
            for p in new
            if not p.endswith("/")
            and not any(fnmatch.fnmatch(p.split("/")[-1], g) for g in declared)
        ]
        if odd:
            problems.append(f"undeclared outputs: {odd}")
    # what it left in its own TMPDIR: a note, not a failure (not its outputs)
    left_tmp = [p for p in _listing(tmp) if p.count("/") <= 1]
    return {
        "case": case.id,
        "family": case.family,
        "what": case.what,
        "command": shlex.join(argv),
        "readonly": case.out_is == "readonly",
        "status": rc,
        "seconds": round(seconds, 2),
        "error": errors[0] if errors else "",
        "stderr_tail": stderr[-2000:] if problems else "",
        "problems": problems,
        "left_in_tmpdir": left_tmp[:8],
    }


# ----------------------------------------------------------------- the main
def _table(results, seed, skipped):
    families = list(dict.fromkeys(r["family"] for r in results))
    rows = [("family", "cases", "passed", "failed", "not run")]

    def counts(name, mine):
        bad = sum(bool(r["problems"]) for r in mine)
        unrun = sum(bool(r.get("skipped")) for r in mine)
        return (name, len(mine), len(mine) - bad - unrun, bad, unrun)

    for family in families:
        rows.append(counts(family, [r for r in results if r["family"] == family]))
    rows.append(counts("total", results))
    lines = [f"{a:<20} {b:>6} {c:>7} {d:>7} {e:>8}" for a, b, c, d, e in rows]
    lines.insert(1, "-" * 52)
    lines.insert(len(lines) - 1, "-" * 52)
    lines.append(f"seed {seed}")
    tmp = [r for r in results if r["left_in_tmpdir"]]
    if tmp:
        kinds = sorted({p.split("-")[0] + "-*" if "-" in p else p
                        for r in tmp for p in r["left_in_tmpdir"]})  # fmt: skip
        lines.append(f"note: {len(tmp)} runs left temporaries in TMPDIR: {kinds}")
    if skipped:
        lines.append(f"skipped: {skipped}")
    return "\n".join(lines)


def fuzz(seed, count, *, jobs=1, families=None, work=None, report=None,
         only=None, verbose=True, light=False):  # fmt: skip
    """Run the plan of ``count`` cases; return (results, table text).

    ``light``: no model file and no model-using case (see plan_cases).
    """
    own = work is None
    work = Path(tempfile.mkdtemp(prefix="fuzz_commands_") if own else work)
    try:
        started = time.monotonic()
        inputs = build_inputs(work / "inputs", model=not light)
        cases = plan_cases(seed, count, inputs, families=families, light=light)
        skipped = ""
        if not can_mount_readonly():
            ro = [c for c in cases if c.out_is == "readonly"]
            cases = [c for c in cases if c.out_is != "readonly"]
            skipped = f"{len(ro)} read-only cases (cannot mount with unshare -m)"
        if only is not None:
            cases = [c for c in cases if c.id in only]
        if verbose:
            heavy = sum(c.heavy for c in cases)
            print(f"{len(cases)} cases ({heavy} model-using), seed {seed}, "
                  f"inputs in {time.monotonic() - started:.0f} s",
                  flush=True)  # fmt: skip
        results = []
        with concurrent.futures.ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = [pool.submit(run_case, c, work / "inputs", work) for c in cases]
            for case, future in zip(cases, futures, strict=True):
                result = future.result()
                results.append(result)
                if verbose:
                    mark = "FAIL" if result["problems"] else "ok"
                    mark = "skip" if result.get("skipped") else mark
                    print(f"[{case.id:4d}] {mark:4} {result['status']!s:>4} "
                          f"{result['seconds']:6.1f}s {case.family}: {case.what}"[:150],
                          flush=True)  # fmt: skip
                    for problem in result["problems"]:
                        print(f"        - {problem}", flush=True)
                if not result["problems"]:
                    shutil.rmtree(work / f"case{case.id:04d}", ignore_errors=True)
        table = _table(results, seed, skipped)
        if report is not None:
            failures = [r for r in results if r["problems"]]
            Path(report).write_text(
                json.dumps(
                    {
                        "seed": seed,
                        "cases": count,
                        "families": families,
                        "light": light,
                        "ran": len(results),
                        "minutes": round((time.monotonic() - started) / 60, 1),
                        "failures": failures,
                    },
                    indent=1,
                )  # fmt: skip
            )
        return results, table
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cases", type=int, default=240)
    parser.add_argument("--jobs", type=int, default=1)
    parser.add_argument("--families", default="",
                        help="comma-separated families (default: all)")  # fmt: skip
    parser.add_argument("--out", default="fuzz_failures.json",
                        help="JSON file of the failures (for --replay)")  # fmt: skip
    parser.add_argument("--work", default="",
                        help="keep inputs and failed cases in this folder")  # fmt: skip
    parser.add_argument("--light", action="store_true",
                        help="no model file, no model-using case (quick)")  # fmt: skip
    parser.add_argument("--replay", nargs=2, metavar=("FILE", "CASE"),
                        help="rerun CASE[,CASE] of the run in FILE")  # fmt: skip
    args = parser.parse_args(argv)
    if args.replay:
        record = json.loads(Path(args.replay[0]).read_text())
        wanted = {int(c) for c in args.replay[1].split(",") if c.strip()}
        results, _ = fuzz(record["seed"], record["cases"],
                          families=record.get("families"),
                          light=record.get("light", False),
                          work=args.work or None, only=wanted)  # fmt: skip
        for result in results:
            print(result["command"])
            print(result["stderr_tail"] or "(passed)")
        return int(any(r["problems"] for r in results))
    families = [f for f in args.families.split(",") if f] or None
    for family in families or ():
        if family not in FAMILIES:
            parser.error(f"unknown family {family!r}: {', '.join(FAMILIES)}")
    started = time.monotonic()
    results, table = fuzz(args.seed, args.cases, jobs=args.jobs,
                          families=families, work=args.work or None,
                          report=args.out, light=args.light)  # fmt: skip
    print()
    print(table)
    print(f"{len(results)} cases in {(time.monotonic() - started) / 60:.1f} min; "
          f"failures in {args.out}")  # fmt: skip
    return int(any(r["problems"] for r in results))


if __name__ == "__main__":
    sys.exit(main())
