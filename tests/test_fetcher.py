"""The published-FINTA fetcher: addresses, checksums, folder (no download)."""

import subprocess
import sys
from pathlib import Path

import pytest

from dipy_tractogen.errors import ModelError
from dipy_tractogen.models import fetcher

PUBLISHED = {
    "best_model_contrastive_tractoinferno_hcp.pt": "2181aa950d8110b89f5b4bf7ebbb9aff",
    "mni_masked.nii.gz": "ea6c119442d23a25033de19b55c607d3",
    "rbx_atlas_v10.json": "0edde5be1b3e32d12a5f02d77b46d32b",
}


@pytest.fixture
def fake_fetch(monkeypatch):
    """Replace DIPY's ``fetch_data``: record the call, create the files."""
    import dipy.data.fetcher

    calls = []

    def fetch_data(files, folder, **kwargs):
        calls.append({"files": dict(files), "folder": folder, **kwargs})
        Path(folder).mkdir(parents=True, exist_ok=True)
        for name in files:
            (Path(folder) / name).write_bytes(b"x")

    monkeypatch.setattr(dipy.data.fetcher, "fetch_data", fetch_data)
    return calls


def test_urls_md5s_and_default_folder(fake_fetch, tmp_path, monkeypatch):
    monkeypatch.setenv("DIPY_HOME", str(tmp_path / "dipy_home"))
    paths = fetcher.fetch_finta_weights()
    folder = tmp_path / "dipy_home" / "tractogen_finta"
    assert len(fake_fetch) == 1
    call = fake_fetch[0]
    assert Path(call["folder"]) == folder
    assert {name: md5 for name, (_, md5) in call["files"].items()} == PUBLISHED
    for name, (url, _) in call["files"].items():
        assert url == f"https://zenodo.org/records/7562790/files/{name}?download=1"
    assert paths == {
        "checkpoint": folder / "best_model_contrastive_tractoinferno_hcp.pt",
        "reference": folder / "mni_masked.nii.gz",
        "bundle_labels": folder / "rbx_atlas_v10.json",
    }


def test_home_default_and_explicit_folder(fake_fetch, tmp_path, monkeypatch):
    monkeypatch.delenv("DIPY_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    assert fetcher.finta_weights_folder() == tmp_path / "user/.dipy/tractogen_finta"
    paths = fetcher.fetch_finta_weights(folder=tmp_path / "mine")
    assert Path(fake_fetch[0]["folder"]) == tmp_path / "mine"
    assert paths["checkpoint"].parent == tmp_path / "mine"


def test_download_failure_is_one_line(monkeypatch, tmp_path):
    import dipy.data.fetcher

    def failing(files, folder, **kwargs):
        raise dipy.data.fetcher.FetcherError("MD5 checksum does not match\nmore")

    monkeypatch.setattr(dipy.data.fetcher, "fetch_data", failing)
    with pytest.raises(ModelError, match="MD5 checksum does not match") as info:
        fetcher.fetch_finta_weights(folder=tmp_path)
    assert "\n" not in str(info.value) and str(tmp_path) in str(info.value)


def test_missing_file_after_download(monkeypatch, tmp_path):
    import dipy.data.fetcher

    monkeypatch.setattr(dipy.data.fetcher, "fetch_data", lambda *a, **k: None)
    with pytest.raises(ModelError, match="is missing"):
        fetcher.fetch_finta_weights(folder=tmp_path)


def test_import_downloads_nothing():
    """Importing the module imports neither DIPY's fetcher nor any framework."""
    code = (
        "import sys, dipy_tractogen.models.fetcher;"
        "print([m for m in ('dipy.data.fetcher', 'urllib.request', 'torch',"
        " 'keras') if m in sys.modules])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[]"
