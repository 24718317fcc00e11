"""``dipy_build_streamline_dataset``: tractograms -> one HDF5 streamline dataset."""

import glob
from pathlib import Path

from dipy_tractogen._checks import check_int
from dipy_tractogen.errors import InputError, TractogramError
from dipy_tractogen.workflows.base import TractogenFlow

__all__ = ["BuildStreamlineDatasetFlow"]


def _expand(patterns):
    """Glob each pattern (sorted); a pattern matching nothing is an error."""
    if isinstance(patterns, (str, Path)):
        patterns = [patterns]
    files = []
    for pattern in patterns:
        pattern = str(pattern)
        if glob.has_magic(pattern):
            matches = sorted(glob.glob(pattern))
            if not matches:
                raise TractogramError(f"no file matches {pattern}")
        else:
            if not Path(pattern).exists():
                raise TractogramError(f"tractogram not found: {pattern}")
            matches = [pattern]
        for m in matches:
            if m not in files:
                files.append(m)
    return files


class BuildStreamlineDatasetFlow(TractogenFlow):
    """Resample tractograms into one HDF5 dataset with bundle, subject, split."""

    @classmethod
    def get_short_name(cls):
        return "build_streamline_dataset"

    def run(
        self,
        input_files,
        participants="",
        n_points=256,
        split_by="subject",
        valid_fraction=0.1,
        test_fraction=0.1,
        reference="",
        seed=0,
        bundle_from="auto",
        bbox_check=False,
        out_dir="",
        out_dataset="streamlines.h5",
    ):
        """Build an HDF5 streamline dataset from tractograms (streamed).

        Every input is checked (missing, corrupt, NaN coordinates; streamlines
        with fewer than 2 points or zero length are dropped with a warning),
        resampled to ``n_points`` equidistant points and appended to one
        chunked HDF5 file with per-streamline bundle ids, subjects, splits,
        lengths and curvatures, and the subjects' covariates from a BIDS
        ``participants.tsv``. Subjects are the ``sub-<label>`` of each path;
        splits are drawn by subject (no subject in two splits). The layout is
        described in ``doc/hdf5-layout.md`` of dipy-tractogen.

        Parameters
        ----------
        input_files : variable string
            Tractograms (.trx, .trk, .tck...) or glob patterns; by default one
            bundle per file, named after the file without its ``sub-``/``ses-``
            entities, unless the file stores bundle ids (``bundle_from``).
        participants : string, optional
            BIDS participants.tsv with the subjects' covariates.
        n_points : int, optional
            Points per resampled streamline.
        split_by : string, optional
            Unit of the train/valid/test split: subject or streamline.
        valid_fraction : float, optional
            Fraction of subjects (or streamlines) for validation.
        test_fraction : float, optional
            Fraction of subjects (or streamlines) for testing.
        reference : string, optional
            Reference NIfTI of the inputs' space (required for .tck; default:
            the header of each .trk/.trx file).
        seed : int, optional
            Seed of the split.
        bundle_from : string, optional
            Bundle labels from: auto (the file's bundle ids if any, else the
            file name), filename or file.
        bbox_check : bool, optional
            Refuse inputs whose streamlines leave their reference volume
            (DIPY's bounding-box check). By default they are kept, as a
            dataset needs no volume (registered bundles often leave their
            template's header), and their count is logged.
        out_dir : string, optional
            Output directory (default: current directory).
        out_dataset : string, optional
            Name of the HDF5 dataset file.
        """
        from dipy.utils.logging import logger

        for name, value in (
            ("valid_fraction", valid_fraction),
            ("test_fraction", test_fraction),
        ):
            if not 0.0 <= value < 1.0:
                raise InputError(f"{name} must be in [0, 1), got {value}")
        train = 1.0 - valid_fraction - test_fraction
        if train <= 0:
            raise InputError(
                f"valid_fraction + test_fraction must be < 1, got "
                f"{valid_fraction + test_fraction:g}"
            )
        seed = check_int(seed, "seed", minimum=0)
        files = _expand(input_files)
        out_path = Path(out_dir) / out_dataset if out_dir else Path(out_dataset)
        # refuses an existing output (without --force), a busy or unwritable one
        claim = self.claim_outputs([out_path])
        self.last_generated_outputs = {"out_dataset": str(out_path)}
        # the dataset's modules only now: a refused output returns at once
        from dipy_tractogen.io.dataset import StreamlineDataset, build_dataset

        build_dataset(
            files,
            out_path,
            n_points=n_points,
            participants=participants or None,
            bundle_from=bundle_from,
            split=(train, valid_fraction, test_fraction),
            split_by=split_by,
            reference=reference or "same",
            seed=seed,
            force=self.force,
            bbox_valid_check=bbox_check,
            claim=claim,
        )
        claim.commit([out_path])
        with StreamlineDataset(out_path) as ds:
            sizes = ds.split_sizes()
            n_outside = int(ds.h5.attrs.get("n_outside_volume", 0))
            if n_outside:
                logger.info(
                    f"{n_outside} streamlines leave their header's volume (kept)"
                )
            logger.info(
                f"{out_path}: {len(ds)} streamlines x {ds.n_points} points, "
                f"{len(ds.bundle_names)} bundles, {len(ds.participant_ids)} "
                f"subjects; train/valid/test = {sizes['train']}/{sizes['valid']}"
                f"/{sizes['test']}"
            )
