"""Issue #16: every failure a one-line error, no orphan files.

One test per defect: each reproduces the failure and checks the one-line
error, the exit status and what is left on disk. Read-only folders and full
disks are real (a tmpfs mounted in a private mount namespace with
``unshare -m``) where this machine permits it, and injected faults otherwise
(root ignores ``chmod 555``).
"""

import dataclasses
import errno
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import time

import nibabel as nib
import numpy as np
import pytest
from dipy.io.stateful_tractogram import Space, StatefulTractogram
from dipy.io.streamline import save_tractogram

import dipy_tractogen.generation.pipeline as pipeline
import dipy_tractogen.io.dataset as dataset_module
import dipy_tractogen.io.outputs as outputs_module
import dipy_tractogen.workflows.base as base_module
from dipy_tractogen.errors import InputError, OutputExistsError
from dipy_tractogen.generation.filters import FilterSettings
from dipy_tractogen.generation.sources import ConditionalSource
from dipy_tractogen.io.dataset import build_dataset
from dipy_tractogen.io.outputs import (
    atomic_output,
    claim_outputs,
    place_together,
)
from dipy_tractogen.io.streaming import (
    FIXED_BYTES,
    TractogramStreamWriter,
    output_bytes,
)
from dipy_tractogen.workflows.cli import error_line

DATASET = "dipy_build_streamline_dataset"
PHANTOM = "dipy_generate_phantom"
REF = (np.eye(4), (50, 50, 50), (1.0, 1.0, 1.0), "RAS")


@pytest.fixture
def bundles(tmp_path):
    """Two one-bundle .trk files (2 x 200 streamlines) in tmp_path/in."""
    folder = tmp_path / "in"
    folder.mkdir()
    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -20
    ref = str(folder / "ref.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((20, 20, 20), np.uint8), affine), ref)
    rng = np.random.default_rng(0)
    files = []
    for name in ("AF_L", "CST_R"):
        t = np.linspace(0, 1, 12)[:, None]
        sl = [
            (np.array([-10.0, -8, 0]) + rng.normal(0, 0.5, 3) + t * [20, 2, 1]).astype(
                np.float32
            )
            for _ in range(200)
        ]
        path = str(folder / f"{name}.trk")
        save_tractogram(StatefulTractogram(sl, ref, Space.RASMM), path)
        files.append(path)
    return files


def _dead_pid():
    """The pid of a process that has ended."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _listing(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


# ------------------------------------------------------ private tmpfs mounts
def _can_mount():
    if not shutil.which("unshare") or os.geteuid() != 0:
        return False
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt"],
        capture_output=True,
    )
    return res.returncode == 0


needs_mount = pytest.mark.skipif(
    not _can_mount(), reason="cannot mount a tmpfs here (unshare -m)"
)


def _in_tmpfs(folder, options, code, *args):
    """Run Python ``code`` (argv: folder, *args) with a private tmpfs mounted
    on ``folder`` (``options``: mount options); returns the completed process
    and what the tmpfs held at the end."""
    script = (
        f"mount -t tmpfs -o {options} tmpfs {folder} && "
        f'"{sys.executable}" -c "$0" "$@"; rc=$?; '
        f"echo LISTING; ls -A {folder}; exit $rc"
    )
    res = subprocess.run(
        ["unshare", "-m", "sh", "-c", script, code, str(folder), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    listing = res.stdout.split("LISTING\n", 1)[-1].split()
    return res, listing


_COMMAND = textwrap.dedent(
    """
    import sys
    from dipy_tractogen.workflows.cli import run_command
    sys.argv = sys.argv[2:]
    run_command(sys.argv[0])
    """
)


def _errors(stderr, name):
    return [line for line in stderr.splitlines() if line.startswith(f"{name}: error:")]


# ------------------------------------------------- 1. an unwritable folder
@needs_mount
def test_read_only_folder_is_one_line(tmp_path, bundles):
    out = tmp_path / "ro"
    out.mkdir()
    res, listing = _in_tmpfs(
        out, "ro,size=1m", _COMMAND, DATASET, *bundles, "--out_dir", out
    )
    assert res.returncode == 1, res.stderr[-2000:]
    assert "Traceback" not in res.stderr
    (line,) = _errors(res.stderr, DATASET)
    assert "read-only file system" in line and str(out) in line
    assert listing == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS])
def test_unwritable_folder_refused_before_work(
    tmp_path, bundles, run_cli, cli_error, monkeypatch, code
):
    # root ignores chmod 555: make creating the claim file fail as it would
    real_open = os.open

    def refusing_open(path, flags, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "out")):
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(outputs_module.os, "open", refusing_open)
    called = []
    monkeypatch.setattr(
        dataset_module, "read_bundles", lambda *a, **k: called.append(1)
    )
    (tmp_path / "out").mkdir()
    assert run_cli(DATASET, *bundles, "--out_dir", tmp_path / "out") == 1
    line = cli_error(DATASET)
    words = "permission denied" if code == errno.EACCES else "read-only file system"
    assert line == (
        f"{DATASET}: error: cannot write to the output folder {tmp_path / 'out'}: "
        f"{words}"
    )
    assert not called  # refused before reading any input
    assert _listing(tmp_path / "out") == []


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_failed_rename_is_one_line(
    tmp_path, bundles, run_cli, cli_error, monkeypatch, code
):
    def failing_replace(src, dst):
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(outputs_module.os, "replace", failing_replace)
    out = tmp_path / "out"
    assert run_cli(DATASET, *bundles, "--out_dir", out) == 1
    line = cli_error(DATASET)
    assert line.startswith(f"{DATASET}: error: ")
    assert line.endswith(str(out / "streamlines.h5"))
    assert os.strerror(code).lower() in line
    assert _listing(out) == []  # no temporary, no claim


def test_error_line_words():
    assert error_line(OSError(errno.ENOSPC, "No space left on device", "/d/a.trx")) == (
        "no space left on device: /d/a.trx"
    )
    assert error_line(IsADirectoryError(errno.EISDIR, "Is a directory", "/d/x")) == (
        "is a directory: /d/x"
    )
    hdf5 = RuntimeError(
        "Can't write data (file write failed: time = now\n, filename = "
        "'/d/.s.h5.1-x.part.h5', file descriptor = 3, errno = 28, error message"
        " = 'No space left on device', buf = 0x1)"
    )
    assert error_line(hdf5) == "no space left on device: /d/.s.h5.1-x.part.h5"


def test_unexpected_errors_keep_their_traceback(
    tmp_path, bundles, run_cli, monkeypatch
):
    def bug(*args, **kwargs):
        raise KeyError("a bug")

    monkeypatch.setattr(dataset_module, "read_bundles", bug)
    with pytest.raises(KeyError):
        run_cli(DATASET, *bundles, "--out_dir", tmp_path / "out")
    assert _listing(tmp_path / "out") == []  # the claim is released all the same


# ------------------------------------------------------------ 2. a full disk
@needs_mount
def test_full_disk_dataset_exits_1_not_139(tmp_path, bundles):
    out = tmp_path / "full"
    out.mkdir()
    res, listing = _in_tmpfs(
        out, "size=1m", _COMMAND, DATASET, *bundles, "--out_dir", out
    )
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    (line,) = _errors(res.stderr, DATASET)
    assert line == f"{DATASET}: error: no space left on device: {out}/streamlines.h5"
    assert listing == []


_H5_FULL = textwrap.dedent(
    """
    import sys, h5py
    import dipy_tractogen.io.dataset as d
    from dipy_tractogen.workflows.cli import run_command

    real, calls = h5py.Dataset.__setitem__, []

    def failing(self, key, value):  # HDF5 fails as on a full disk
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError(
                "Can't write data (file write failed: time = now, filename = "
                f"'{self.file.filename}', file descriptor = 3, errno = 28, "
                "error message = 'No space left on device')"
            )
        real(self, key, value)

    h5py.Dataset.__setitem__ = failing
    d._check_space = lambda tmp, nbytes: None  # the fault comes from HDF5
    sys.argv = sys.argv[2:]
    run_command(sys.argv[0])
    """
)


def test_full_disk_in_hdf5_exits_1(tmp_path, bundles):
    # the failure HDF5 itself reports (no free-space check), in a fresh process
    # so that a crash of libhdf5 at exit shows in the exit status
    out = tmp_path / "out"
    res = subprocess.run(
        [sys.executable, "-c", _H5_FULL, "x", DATASET, *bundles, "--out_dir", out],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert res.returncode == 1, (res.returncode, res.stderr[-2000:])
    (line,) = _errors(res.stderr, DATASET)
    assert line == f"{DATASET}: error: no space left on device: {out}/streamlines.h5"
    assert _listing(out) == []


def test_build_dataset_full_disk_raises_enospc(tmp_path, bundles, monkeypatch):
    monkeypatch.setattr(
        dataset_module.os,
        "statvfs",
        lambda p: os.statvfs_result((4096, 4096, 10, 1, 1, 10, 1, 1, 0, 255)),
    )
    with pytest.raises(OSError, match="No space left on device") as info:
        build_dataset(bundles, tmp_path / "out" / "d.h5")
    assert info.value.errno == errno.ENOSPC
    assert _listing(tmp_path / "out") == []


class _FullDisk:
    """A spill file that fails as on a full disk."""

    closed = False

    def write(self, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    def close(self):
        self.closed = True
        raise OSError(errno.ENOSPC, "No space left on device")


def test_stream_writer_full_disk_leaves_nothing(tmp_path):
    out = tmp_path / "g.trx"
    with pytest.raises(OSError) as info:
        with TractogramStreamWriter(out, REF) as w:
            w._positions.close()
            w._positions = _FullDisk()
            w.write(np.full((2, 4, 3), 5, np.float32))
    assert info.value.errno == errno.ENOSPC
    assert _listing(tmp_path) == []


def test_stream_writer_full_disk_at_close_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "g.trk"
    w = TractogramStreamWriter(out, REF)
    w.write(np.full((2, 4, 3), 5, np.float32))
    real_open = open

    def full(path, mode="r", *args, **kwargs):
        if str(path).endswith(".json") and "w" in mode:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(OSError, match="No space left"):
        w.close()
    assert _listing(tmp_path) == []


@needs_mount
def test_stream_writer_real_full_disk(tmp_path):
    code = textwrap.dedent(
        """
        import sys, numpy as np
        from dipy_tractogen.io.streaming import TractogramStreamWriter
        ref = (np.eye(4), (50, 50, 50), (1.0, 1.0, 1.0), "RAS")
        try:
            with TractogramStreamWriter(sys.argv[1] + "/g.trx", ref) as w:
                for _ in range(20):
                    w.write(np.ones((1000, 32, 3), np.float32))
        except OSError as exc:
            print("ERRNO", exc.errno)
            sys.exit(1)
        """
    )
    folder = tmp_path / "full"
    folder.mkdir()
    res, listing = _in_tmpfs(folder, "size=1m", code)
    assert res.returncode == 1, res.stderr[-2000:]
    assert f"ERRNO {errno.ENOSPC}" in res.stdout
    assert listing == []


# ------------------------------------------------------------- 3. --seed -1
def test_dataset_seed_minus_one(tmp_path, bundles, run_cli, cli_error):
    out = tmp_path / "out"
    assert run_cli(DATASET, *bundles, "--seed", "-1", "--out_dir", out) == 1
    assert cli_error(DATASET) == (
        f"{DATASET}: error: seed must be an integer >= 0, got -1"
    )
    assert _listing(out) == []


def test_build_dataset_checks_seed_first(tmp_path, bundles, monkeypatch):
    monkeypatch.setattr(
        dataset_module, "read_bundles", lambda *a, **k: pytest.fail("worked")
    )
    for seed in (-1, 1.5, True):
        with pytest.raises(InputError, match="seed must be an integer >= 0"):
            build_dataset(bundles, tmp_path / "d.h5", seed=seed)
    assert _listing(tmp_path) == ["in"]


# ------------------------------------------- 6. outputs together, claims
def test_directory_output_refused_even_with_force(tmp_path, run_cli, cli_error):
    (tmp_path / "phantom.trk").mkdir()
    code = run_cli(
        PHANTOM, "--out_dir", tmp_path, "--out_tractogram", "phantom.trk", "--force"
    )
    assert code == 1
    assert cli_error(PHANTOM) == (
        f"{PHANTOM}: error: output is a directory: {tmp_path / 'phantom.trk'} "
        "(give a file name; --force does not replace a directory)"
    )
    assert _listing(tmp_path) == ["phantom.trk"]  # no phantom.json beside it
    assert _listing(tmp_path / "phantom.trk") == []


def test_stream_writer_directory_output_leaves_no_sidecar(tmp_path):
    (tmp_path / "g.trx").mkdir()
    with pytest.raises(OutputExistsError, match="is a directory"):
        with TractogramStreamWriter(tmp_path / "g.trx", REF, force=True) as w:
            w.write(np.full((2, 4, 3), 5, np.float32))
    assert _listing(tmp_path) == ["g.trx"]


def test_tractogram_placed_before_sidecar(tmp_path, monkeypatch):
    order = []
    real = os.replace

    def spy(src, dst):
        order.append(os.path.basename(dst))
        real(src, dst)

    monkeypatch.setattr(outputs_module.os, "replace", spy)
    with TractogramStreamWriter(tmp_path / "g.trk", REF) as w:
        w.write(np.full((2, 4, 3), 5, np.float32))
    assert order == ["g.trk", "g.json"]


def test_place_together_rolls_back(tmp_path, monkeypatch):
    (tmp_path / "a.trk").write_text("old a")
    (tmp_path / "a.json").write_text("old json")
    moves = []
    for name, text in (("a.trk", "new a"), ("a.json", "new json")):
        tmp = tmp_path / f".{name}.tmp"
        tmp.write_text(text)
        moves.append((tmp, tmp_path / name))
    real, calls = os.replace, []

    def second_fails(src, dst):
        calls.append(dst)
        if str(dst).endswith("a.json") and str(src).endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(dst))
        real(src, dst)

    monkeypatch.setattr(outputs_module.os, "replace", second_fails)
    with pytest.raises(OSError):
        place_together(moves, force=True)
    assert (tmp_path / "a.trk").read_text() == "old a"
    assert (tmp_path / "a.json").read_text() == "old json"
    assert _listing(tmp_path) == ["a.json", "a.trk"]


def test_claim_stages_and_commits_together(tmp_path):
    out, side = tmp_path / "g.trk", tmp_path / "g.json"
    side.write_text("old")
    with claim_outputs([out, side], force=True) as claim:
        assert _listing(tmp_path) == [".g.json.claim", ".g.trk.claim", "g.json"]
        with TractogramStreamWriter(out, REF, claim=claim) as w:
            w.write(np.full((2, 4, 3), 5, np.float32))
        with pytest.raises(OSError, match="nothing was written"):
            with atomic_output(tmp_path / "g.trk", claim=claim):
                pass  # nothing written: refused, the claim keeps its staging
        assert claim.staged == [out, side]
        assert not out.exists() and side.read_text() == "old"
    assert _listing(tmp_path) == ["g.json", "g.trk"]
    assert json.loads(side.read_text())["tractogram"] == "g.trk"


def test_failed_run_releases_claim_and_temporaries(tmp_path):
    out = tmp_path / "a.txt"
    with pytest.raises(RuntimeError):
        with claim_outputs([out]) as claim:
            with atomic_output(out, claim=claim) as tmp:
                open(tmp, "w").write("x")
            raise RuntimeError("later failure")
    assert _listing(tmp_path) == []


def test_second_claim_refused_naming_pid(tmp_path):
    out = tmp_path / "g.trx"
    with claim_outputs([out]):
        with pytest.raises(OutputExistsError) as info:
            claim_outputs([out, tmp_path / "g.json"])
        assert f"pid {os.getpid()}" in str(info.value)
        assert str(out) in str(info.value)
    assert _listing(tmp_path) == []


def test_live_claim_refuses_command_before_work(
    tmp_path, bundles, run_cli, cli_error, monkeypatch
):
    # another run (a live process) holds the output
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        out = tmp_path / "out"
        out.mkdir()
        (out / ".streamlines.h5.claim").write_text(
            json.dumps({"pid": other.pid, "host": os.uname().nodename, "time": "t"})
        )
        monkeypatch.setattr(
            dataset_module, "read_bundles", lambda *a, **k: pytest.fail("worked")
        )
        assert run_cli(DATASET, *bundles, "--out_dir", out) == 1
        line = cli_error(DATASET)
        assert f"is being written by another run (pid {other.pid}" in line
        assert _listing(out) == [".streamlines.h5.claim"]  # theirs, kept
    finally:
        other.kill()
        other.wait()


def test_concurrent_commands_one_refused(tmp_path, bundles):
    out = tmp_path / "out"
    code = textwrap.dedent(
        """
        import sys, time
        import dipy_tractogen.io.dataset as d
        from dipy_tractogen.workflows.cli import run_command
        real = d.read_bundles
        def slow(*a, **k):
            time.sleep(1.5)
            return real(*a, **k)
        d.read_bundles = slow
        sys.argv = sys.argv[2:]
        run_command(sys.argv[0])
        """
    )
    args = [sys.executable, "-c", code, "x", DATASET, *bundles, "--out_dir", out]
    procs = [
        subprocess.Popen(args, stderr=subprocess.PIPE, text=True) for _ in range(2)
    ]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(rc for rc, _ in results)
    assert codes == [0, 1], results
    err = next(e for rc, e in results if rc == 1)
    refused = _errors(err, DATASET)
    assert len(refused) == 1
    assert "is being written by another run" in refused[0] or (
        "output exists" in refused[0]
    )
    assert "added" not in err  # refused before reading any input
    assert _listing(out) == ["streamlines.h5"]


# ------------------------------------------ 7. what kill -9 left behind
def test_stale_temporaries_removed_by_next_run(tmp_path, bundles, run_cli, capsys):
    out = tmp_path / "out"
    out.mkdir()
    dead = _dead_pid()
    part = out / f".streamlines.h5.{dead}-abcd1234.part.h5"
    part.write_bytes(b"x" * 46000)
    spill = out / f".streamlines.h5.{dead}-efgh5678.part"
    spill.mkdir()
    (spill / "positions.3.float32").write_bytes(b"x" * 1500)
    legacy = out / ".streamlines.h5.ab12cd34.part.h5"
    legacy.write_bytes(b"x" * 10)
    os.utime(legacy, (0, 0))
    (out / ".streamlines.h5.claim").write_text(
        json.dumps({"pid": dead, "host": os.uname().nodename, "time": "t"})
    )
    alive = out / f".streamlines.h5.{os.getpid()}-live0001.part.h5"
    alive.write_bytes(b"y")  # a live process's: kept
    other = out / f".other.h5.{dead}-abcd1234.part.h5"
    other.write_bytes(b"z")  # another output's: not this run's business
    assert run_cli(DATASET, *bundles, "--out_dir", out) == 0
    assert _listing(out) == sorted([alive.name, other.name, "streamlines.h5"])
    # the command's logger writes to standard output
    messages = [m.split(": ", 1)[-1] for m in capsys.readouterr().out.splitlines()]
    assert f"removed the stale temporary {part} (46.0 KB) of an ended run" in messages
    assert f"removed the stale temporary {spill} (1.5 KB) of an ended run" in messages
    assert f"removed the stale temporary {legacy} (10 B) of an ended run" in messages
    assert any(m.startswith(f"removed the stale claim {out}") for m in messages)


def test_stale_kept_aside_original_is_restored(tmp_path):
    dead = _dead_pid()
    aside = tmp_path / f".a.txt.{dead}-0badf00d.replaced"
    aside.write_text("the user's file")
    with claim_outputs([tmp_path / "a.txt"], force=True):
        pass
    assert (tmp_path / "a.txt").read_text() == "the user's file"
    assert _listing(tmp_path) == ["a.txt"]


# ----------------------------------------- dipy_generate_tractogram (3, 5, 6, 7)
GENERATE = "dipy_generate_tractogram"
FILTER_FIELDS = {f.name for f in dataclasses.fields(FilterSettings)}

_BAD_GENERATE = [
    (["--seed", "-1"], "seed must be an integer >= 0, got -1"),
    (["--n_streamlines", "0"], "n_streamlines must be an integer >= 1, got 0"),
    (["--chunk_size", "0"], "chunk_size must be an integer >= 1, got 0"),
    (["--budget", "0"], "budget must be a finite number > 0, got 0.0"),
    (["--budget", "nan"], "budget must be a finite number > 0, got nan"),
    (["--bandwidth", "0"], "bandwidth must be a finite number > 0 or scott"),
    (["--bandwidth", "wide"], "or cv, got 'wide'"),
    (["--condition_bandwidth", "-0.1"], "condition_bandwidth must be a finite"),
    (["--min_length", "-1"], "min_length must be a finite number >= 0"),
    (["--max_length", "inf"], "max_length must be a finite number >= 0, got inf"),
    (["--min_length", "300"], "min_length 300 mm is greater than max_length 220"),
    (["--min_wm_fraction", "1.5"], "min_wm_fraction must lie in [0, 1], got 1.5"),
    (["--max_curvature", "-1"], "max_curvature must be a finite number >= 0"),
    (["--latent_percentile", "150"], "latent_percentile must be a finite number in"),
    (["--n_streamlines", str(10**12)], "n_streamlines must be at most 2,147,483,647"),
]


@pytest.mark.parametrize(("args", "message"), _BAD_GENERATE)
def test_generate_bad_numbers_are_one_line_before_work(
    tmp_path, run_cli, cli_error, monkeypatch, args, message
):
    monkeypatch.setattr(
        base_module, "claim_outputs", lambda *a, **k: pytest.fail("claimed")
    )
    out = tmp_path / "out"
    assert run_cli(GENERATE, "--n_streamlines", 5, *args, "--out_dir", out) == 1
    line = cli_error(GENERATE)
    assert message in line, line
    assert not out.exists()


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"seed": -1}, "seed must be an integer >= 0, got -1"),
        ({"seed": 1.5}, "seed must be an integer >= 0"),
        ({"n_streamlines": 0}, "n_streamlines must be an integer >= 1"),
        ({"n_streamlines": 2**31}, "n_streamlines must be at most 2,147,483,647"),
        ({"chunk_size": 0}, "chunk_size must be an integer >= 1"),
        ({"budget": -1}, "budget must be a finite number > 0"),
        ({"bandwidth": -1}, "bandwidth must be a finite number > 0"),
        ({"min_length": -1}, "min_length must be a finite number >= 0"),
        ({"min_length": 50, "max_length": 10}, "greater than max_length"),
        ({"min_wm_fraction": 2}, "min_wm_fraction must lie in [0, 1]"),
        ({"max_curvature": 0}, "max_curvature must be a finite number > 0"),
        ({"latent_percentile": -5}, "latent_percentile must be a finite number"),
    ],
)
def test_generation_library_checks_options_first(
    tmp_path, monkeypatch, options, message
):
    monkeypatch.setattr(pipeline, "resolve_model", lambda *a: pytest.fail("worked"))
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        pipeline.generate_tractogram(tmp_path / "g.trx", **options)
    settings = {k: options[k] for k in FILTER_FIELDS & set(options)}
    direct = {k: v for k, v in options.items() if k not in settings}
    if settings:
        direct["filters"] = FilterSettings(**settings)
    with pytest.raises(InputError, match=message.replace("[", r"\[")):
        pipeline.generate_streamlines(**direct)
    assert _listing(tmp_path) == []


def test_condition_bandwidth_checked_by_the_source():
    with pytest.raises(InputError, match="condition_bandwidth must be a finite"):
        ConditionalSource({"age": [30]}, condition_bandwidth=0)


_SMALL_DISK = """
from collections import namedtuple
import dipy_tractogen.io.outputs as outputs

usage = namedtuple("usage", "total used free")
outputs.shutil.disk_usage = lambda path: usage(10**12, 9 * 10**11, 80 * 10**9)
"""


@pytest.mark.parametrize(
    ("n", "message"),
    [
        (
            10**9,
            r"needs about 6\.8 TB for 1,000,000,000 streamlines, 80\.0 GB free "
            r"in {out}$",
        ),
        (10**12, r"n_streamlines must be at most 2,147,483,647 .*1,000,000,000,000$"),
    ],
)
def test_generate_refuses_what_cannot_fit(tmp_path, n, message, cli_in_subprocess):
    """A count beyond a file's limit, or beyond the disk's free space (80 GB
    here, by a patched shutil.disk_usage), is refused in one line before
    the outputs are claimed and before TensorFlow starts."""
    out = tmp_path / "out"
    out.mkdir()
    status, heavy, err = cli_in_subprocess(
        GENERATE, "--n_streamlines", n, "--out_dir", out, prelude=_SMALL_DISK
    )
    assert (status, heavy) == (1, []), err[-2000:]
    errors = _errors(err, GENERATE)
    assert len(errors) == 1, err[-2000:]
    assert re.search(message.format(out=re.escape(str(out))), errors[0]), errors[0]
    assert _listing(out) == []


def test_output_estimate_matches_measured_sizes():
    """The estimate against the sizes measured with the shipped default
    model (4,000 streamlines of 256 points, bundle as int16)."""
    dps = {"bundle": "int16"}
    for path, dtype, measured in [
        ("g.trx", "float32", 12_346_437),
        ("g.trx", "float16", 6_202_437),
        ("g.trk", "float32", 12_321_000),
        ("g.tck", "float32", 12_336_144),
    ]:
        size, peak = output_bytes(
            4000, 256, path=path, positions_dtype=dtype, data_per_streamline=dps
        )
        assert measured <= size <= measured + FIXED_BYTES, path
        assert peak > 1.9 * measured


def test_generate_directory_output_with_force(tmp_path, run_cli, cli_error):
    (tmp_path / "dir.trx").mkdir()
    args = ["--n_streamlines", 5, "--no_snapshot", "--force", "--out_dir", tmp_path]
    assert run_cli(GENERATE, *args, "--out_tractogram", "dir.trx") == 1
    assert cli_error(GENERATE) == (
        f"{GENERATE}: error: output is a directory: {tmp_path / 'dir.trx'} "
        "(give a file name; --force does not replace a directory)"
    )
    assert _listing(tmp_path) == ["dir.trx"]  # no dir.json, no report
    assert _listing(tmp_path / "dir.trx") == []


def test_generate_refused_at_once_while_another_run_writes(
    tmp_path, run_cli, cli_error, monkeypatch
):
    monkeypatch.setattr(
        pipeline, "generate_tractogram", lambda *a, **k: pytest.fail("worked")
    )
    out = tmp_path / "generated.trx"
    with claim_outputs([out]):  # another run's claim
        args = ["--n_streamlines", 5, "--no_snapshot", "--out_dir", tmp_path]
        assert run_cli(GENERATE, *args) == 1
        line = cli_error(GENERATE)
        assert f"output {out} is being written by another run (pid {os.getpid()}" in (
            line
        )
        assert _listing(tmp_path) == [".generated.trx.claim"]
    assert _listing(tmp_path) == []


def test_generate_stages_in_the_claim(tmp_path):
    out, side = tmp_path / "g.trx", tmp_path / "g.json"
    with claim_outputs([out, side]) as claim:
        report = pipeline.generate_tractogram(out, n_streamlines=6, seed=1, claim=claim)
        assert report.n_produced == 6
        assert claim.staged == [out, side] and not out.exists()
    assert _listing(tmp_path) == ["g.json", "g.trx"]
    with pytest.raises(ValueError, match="not claimed"):
        with claim_outputs([tmp_path / "h.trx"]) as claim:
            pipeline.generate_tractogram(
                tmp_path / "h.trx", n_streamlines=6, claim=claim
            )


def test_generate_failure_between_renames_leaves_neither(
    tmp_path, run_cli, monkeypatch, capsys
):
    real = os.replace

    def sidecar_fails(src, dst):
        if str(dst).endswith("generated.json") and ".part" in str(src):
            raise OSError(errno.EIO, "Input/output error", str(dst))
        real(src, dst)

    monkeypatch.setattr(outputs_module.os, "replace", sidecar_fails)
    out = tmp_path / "out"
    args = ["--n_streamlines", 6, "--no_snapshot", "--out_dir", out]
    assert run_cli(GENERATE, *args) == 1
    errors = _errors(capsys.readouterr().err, GENERATE)
    assert len(errors) == 1 and "generated.json" in errors[0], errors
    assert _listing(out) == []  # neither the tractogram nor its sidecar


_SLOW_GENERATION = """
import sys
from dipy_tractogen.workflows.cli import run_command
sys.argv = ["dipy_generate_tractogram", *sys.argv[1:]]
run_command("dipy_generate_tractogram")
"""


def test_killed_generation_leaves_temporaries_the_next_run_removes(
    tmp_path, run_cli, capsys
):
    out = tmp_path / "out"
    args = ["--n_streamlines", 2_000_000, "--no_snapshot", "--chunk_size", 500]
    proc = subprocess.Popen(
        [sys.executable, "-c", _SLOW_GENERATION, *map(str, args), "--out_dir", out],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    prefix = f".generated.trx.{proc.pid}-"
    try:
        deadline = time.time() + 240
        spill = []
        while time.time() < deadline and proc.poll() is None:
            spill = [n for n in _listing(out) if n.startswith(prefix)]
            part = out / spill[0] / "positions.3.float32" if spill else None
            if part is not None and part.is_file() and part.stat().st_size > 0:
                break
            time.sleep(0.2)
        assert spill, f"no spill folder appeared: {_listing(out)}"
    finally:
        proc.kill()  # kill -9
        proc.wait()
    left = _listing(out)
    assert ".generated.trx.claim" in left and spill[0] in left
    assert "generated.trx" not in left

    assert run_cli(GENERATE, "--n_streamlines", 6, "--out_dir", out) == 0
    assert _listing(out) == ["generated.html", "generated.json", "generated.png"] + [
        "generated.trx"
    ] or _listing(out) == ["generated.html", "generated.json", "generated.trx"]
    messages = [m.split(": ", 1)[-1] for m in capsys.readouterr().out.splitlines()]
    assert any(
        m.startswith(f"removed the stale temporary {out / spill[0]} (")
        for m in messages
    ), messages
    assert any(m.startswith("removed the stale claim") for m in messages), messages
