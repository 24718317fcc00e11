import os

import numpy as np
import pytest

from dipy_tractogen.errors import OutputExistsError
from dipy_tractogen.io.outputs import atomic_output, check_writable


def test_atomic_output_writes_and_renames(tmp_path):
    target = tmp_path / "sub" / "a.npy"
    with atomic_output(target) as tmp:
        assert tmp.endswith(".npy")
        np.save(tmp, np.arange(3))
    assert os.listdir(target.parent) == ["a.npy"]
    np.testing.assert_array_equal(np.load(target), np.arange(3))


def test_atomic_output_refuses_existing(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("keep me")
    with pytest.raises(OutputExistsError, match="a.txt"):
        with atomic_output(target) as tmp:
            open(tmp, "w").write("new")
    assert target.read_text() == "keep me"


def test_atomic_output_force_replaces(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with atomic_output(target, force=True) as tmp:
        open(tmp, "w").write("new")
    assert target.read_text() == "new"


def test_atomic_output_cleans_up_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("keep me")
    with pytest.raises(RuntimeError):
        with atomic_output(target, force=True) as tmp:
            open(tmp, "w").write("half")
            raise RuntimeError("boom")
    assert target.read_text() == "keep me"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_check_writable(tmp_path):
    check_writable([tmp_path / "nope"])
    (tmp_path / "x").write_text("")
    with pytest.raises(OutputExistsError):
        check_writable(tmp_path / "x")
    check_writable(tmp_path / "x", force=True)


def test_temporary_names_carry_the_pid(tmp_path):
    from dipy_tractogen.io.outputs import temporary_path

    tmp = temporary_path(tmp_path / "a.trx")
    name = os.path.basename(tmp)
    assert name.startswith(f".a.trx.{os.getpid()}-") and name.endswith(".part.trx")
    assert not os.path.exists(tmp)
    folder = temporary_path(tmp_path / "b.trx", directory=True)
    assert os.path.isdir(folder) and folder.endswith(".part")


def test_check_writable_refuses_a_directory_even_with_force(tmp_path):
    (tmp_path / "d.trx").mkdir()
    with pytest.raises(OutputExistsError, match="is a directory"):
        check_writable(tmp_path / "d.trx", force=True)


def test_claim_refuses_existing_without_force(tmp_path):
    from dipy_tractogen.io.outputs import claim_outputs

    (tmp_path / "a.txt").write_text("keep")
    with pytest.raises(OutputExistsError, match="output exists"):
        claim_outputs([tmp_path / "a.txt"])
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]  # no claim file left
    with claim_outputs([tmp_path / "a.txt"], force=True) as claim:
        with atomic_output(tmp_path / "a.txt", claim=claim) as tmp:
            open(tmp, "w").write("new")
        assert (tmp_path / "a.txt").read_text() == "keep"
    assert (tmp_path / "a.txt").read_text() == "new"
    assert sorted(os.listdir(tmp_path)) == ["a.txt"]
