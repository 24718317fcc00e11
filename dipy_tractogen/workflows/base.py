"""Behaviour shared by every dipy-tractogen workflow."""

from pathlib import Path

from dipy.workflows.workflow import Workflow

from dipy_tractogen.errors import OutputExistsError

__all__ = ["TractogenFlow"]


class TractogenFlow(Workflow):
    """A DIPY workflow that refuses loudly instead of skipping silently.

    DIPY's :meth:`Workflow.get_io_iterator` yields nothing (and says so only at
    INFO level) when an output exists and ``--force`` is not given, so a
    command would end with exit code 0 having done nothing. Here that case
    raises :class:`~dipy_tractogen.errors.OutputExistsError`, which the entry
    points turn into a one-line error and a non-zero exit.
    """

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
        """Declare the files a run will write, refusing existing ones.

        For commands with no positional input, where DIPY's
        :meth:`get_io_iterator` cannot be used (it raises "No inputs").

        Parameters
        ----------
        paths : iterable of str or path-like
            Every file the run will create.

        Raises
        ------
        OutputExistsError
            If one exists and ``--force`` was not given.
        """
        self.flat_outputs = [str(p) for p in paths]
        self.manage_output_overwrite()
