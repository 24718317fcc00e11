"""Behaviour shared by every dipy-tractogen workflow."""

import functools
from pathlib import Path

from dipy.workflows.workflow import Workflow

from dipy_tractogen.errors import OutputExistsError
from dipy_tractogen.io.outputs import claim_outputs

__all__ = ["TractogenFlow"]


def _with_claim(run):
    """Wrap a workflow's ``run``: its output claim is committed when it
    returns and released whatever happens (the signature and docstring, which
    DIPY's argument parser reads, are kept)."""

    @functools.wraps(run)
    def wrapper(self, *args, **kwargs):
        if getattr(self, "_in_run", False):  # a subclass calling super().run
            return run(self, *args, **kwargs)
        self._in_run = True
        try:
            result = run(self, *args, **kwargs)
            if self.output_claim is not None:
                self.output_claim.commit()
            return result
        finally:
            self._in_run = False
            self.release_outputs()

    wrapper._claims_outputs = True
    return wrapper


class TractogenFlow(Workflow):
    """A DIPY workflow that refuses loudly instead of skipping silently.

    DIPY's :meth:`Workflow.get_io_iterator` yields nothing (and says so only at
    INFO level) when an output exists and ``--force`` is not given, so a
    command would end with exit code 0 having done nothing. Here that case
    raises :class:`~dipy_tractogen.errors.OutputExistsError`, which the entry
    points turn into a one-line error and a non-zero exit.

    A run claims its outputs (:meth:`claim_outputs`) before its work; the
    claim (:class:`~dipy_tractogen.io.outputs.OutputClaim`) is committed when
    ``run`` returns and released when it ends, however it ends: every
    subclass's ``run`` is wrapped to do so.
    """

    #: the :class:`~dipy_tractogen.io.outputs.OutputClaim` of the current run
    output_claim = None

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        run = cls.__dict__.get("run")
        if run is not None and not getattr(run, "_claims_outputs", False):
            cls.run = _with_claim(run)

    def manage_output_overwrite(self):
        existing = [p for p in self.flat_outputs if Path(p).exists()]
        if existing and not self._force_overwrite:
            names = ", ".join(str(p) for p in existing)
            raise OutputExistsError(
                f"output exists: {names} (use --force to overwrite)"
            )
        return True

    @property
    def force(self):
        """Whether ``--force`` was given."""
        return bool(self._force_overwrite)

    def claim_outputs(self, paths):
        """Claim the files a run will write, before its work.

        Refuses an existing output without ``--force``, an output that is a
        directory, an unwritable folder, and an output another run is
        writing (its pid is named); removes the temporaries killed runs left
        for these names (see :func:`~dipy_tractogen.io.outputs.claim_outputs`).
        The claim is held until ``run`` ends. Temporaries staged in it
        (``claim=self.output_claim`` given to
        :func:`~dipy_tractogen.io.outputs.atomic_output` or
        :class:`~dipy_tractogen.io.streaming.TractogramStreamWriter`) are
        renamed into place together by ``self.output_claim.commit(...)``, or
        when ``run`` returns; they are removed if it fails.

        Parameters
        ----------
        paths : iterable of str or path-like
            Every file the run will create.

        Returns
        -------
        claim : OutputClaim

        Raises
        ------
        OutputExistsError
            If one exists and ``--force`` was not given, one is a directory,
            or another run is writing one.
        OSError
            If the output folder cannot be created or written.
        """
        self.flat_outputs = [str(p) for p in paths]
        self.release_outputs()
        self.output_claim = claim_outputs(self.flat_outputs, force=self.force)
        return self.output_claim

    def release_outputs(self):
        """Release the claim of the current run (temporaries not committed
        are removed)."""
        claim, self.output_claim = self.output_claim, None
        if claim is not None:
            claim.release()
