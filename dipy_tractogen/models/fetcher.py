"""Download the published FINTA files (for users with internet access).

The FINTA authors published their trained network, the MNI reference it
works in and the bundle labels of their atlas on Zenodo (record 7562790,
doi:10.5281/zenodo.7562790) under a non-commercial licence of their own.
dipy-tractogen never ships these files: :func:`fetch_finta_weights`
downloads them, on request only, into DIPY's data folder with MD5 checks
(:func:`dipy.data.fetcher.fetch_data`). Nothing is downloaded at import
time.

The download addresses follow Zenodo's current pattern
``https://zenodo.org/records/<record>/files/<name>?download=1``; the older
``https://zenodo.org/record/<record>/files/<name>`` (used by DIPY's own
fetchers and the authors' code) redirects there. The MD5 sums are those
published for the files.

The RecoBundlesX atlas whose bundles can seed generation in MNI space is a
separate record (7562635, doi:10.5281/zenodo.7562635): download it from
Zenodo by hand.
"""

import os
from pathlib import Path

from dipy_tractogen.errors import ModelError

__all__ = [
    "FINTA_RECORD",
    "FINTA_RECORD_DOI",
    "RBX_ATLAS_RECORD_DOI",
    "FINTA_FILES",
    "FINTA_CHECKPOINT",
    "FINTA_REFERENCE",
    "FINTA_BUNDLE_LABELS",
    "zenodo_url",
    "finta_weights_folder",
    "fetch_finta_weights",
]

#: Zenodo record of the published FINTA weights
FINTA_RECORD = 7562790
#: its DOI
FINTA_RECORD_DOI = "doi:10.5281/zenodo.7562790"
#: DOI of the RecoBundlesX atlas (MNI-space bundles usable as seeds)
RBX_ATLAS_RECORD_DOI = "doi:10.5281/zenodo.7562635"

FINTA_CHECKPOINT = "best_model_contrastive_tractoinferno_hcp.pt"
FINTA_REFERENCE = "mni_masked.nii.gz"
FINTA_BUNDLE_LABELS = "rbx_atlas_v10.json"


def zenodo_url(record, name):
    """Download address of file ``name`` of Zenodo record ``record``.

    Parameters
    ----------
    record : int
        Zenodo record number.
    name : str
        File name inside the record.

    Returns
    -------
    url : str
    """
    return f"https://zenodo.org/records/{int(record)}/files/{name}?download=1"


#: file name -> (url, md5) of the published files (the checkpoint is 56.7 MB)
FINTA_FILES = {
    FINTA_CHECKPOINT: (
        zenodo_url(FINTA_RECORD, FINTA_CHECKPOINT),
        "2181aa950d8110b89f5b4bf7ebbb9aff",
    ),
    FINTA_REFERENCE: (
        zenodo_url(FINTA_RECORD, FINTA_REFERENCE),
        "ea6c119442d23a25033de19b55c607d3",
    ),
    FINTA_BUNDLE_LABELS: (
        zenodo_url(FINTA_RECORD, FINTA_BUNDLE_LABELS),
        "0edde5be1b3e32d12a5f02d77b46d32b",
    ),
}


def finta_weights_folder(folder=None):
    """Folder holding the published FINTA files.

    Parameters
    ----------
    folder : str or path-like, optional
        Explicit folder; by default ``$DIPY_HOME/tractogen_finta``
        (``~/.dipy/tractogen_finta`` when ``DIPY_HOME`` is unset), read when
        called.

    Returns
    -------
    folder : pathlib.Path
    """
    if folder:
        return Path(folder).expanduser()
    home = os.environ.get("DIPY_HOME") or Path("~").expanduser() / ".dipy"
    return Path(home) / "tractogen_finta"


def fetch_finta_weights(*, folder=None):
    """Download the published FINTA checkpoint, MNI reference and labels.

    Files already present with the right MD5 are not downloaded again. The
    files stay under their authors' non-commercial licence: use them for
    non-commercial research only, on the authors' terms, and cite the
    papers.

    Parameters
    ----------
    folder : str or path-like, optional
        Destination (see :func:`finta_weights_folder`).

    Returns
    -------
    paths : dict of str to pathlib.Path
        ``checkpoint`` (``best_model_contrastive_tractoinferno_hcp.pt``),
        ``reference`` (``mni_masked.nii.gz``) and ``bundle_labels``
        (``rbx_atlas_v10.json``).

    Raises
    ------
    ModelError
        If a download fails or a file has the wrong MD5 (one line).

    References
    ----------
    .. [1] Legarreta JH, et al. Filtering in tractography using autoencoders
       (FINTA). Medical Image Analysis 72, 102126, 2021.
       doi:10.1016/j.media.2021.102126
    .. [2] Legarreta JH, et al. Generative sampling in bundle tractography
       using autoencoders (GESTA). Medical Image Analysis 85, 102761, 2023.
       doi:10.1016/j.media.2023.102761
    """
    from dipy.data.fetcher import fetch_data

    folder = finta_weights_folder(folder)
    try:
        fetch_data(dict(FINTA_FILES), str(folder), data_size="about 60 MB")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # FetcherError, URLError, OSError...
        lines = [x.strip() for x in str(exc).splitlines() if x.strip()]
        reason = lines[0] if lines else type(exc).__name__
        raise ModelError(
            f"downloading the published FINTA files ({FINTA_RECORD_DOI}) into "
            f"{folder} failed: {reason}"
        ) from exc
    paths = {
        "checkpoint": folder / FINTA_CHECKPOINT,
        "reference": folder / FINTA_REFERENCE,
        "bundle_labels": folder / FINTA_BUNDLE_LABELS,
    }
    for path in paths.values():
        if not path.is_file():
            raise ModelError(f"download finished but {path} is missing")
    return paths
