"""DIPY workflows (command-line programs) of dipy-tractogen.

Each command is a :class:`dipy.workflows.workflow.Workflow` subclass whose
``run`` signature and numpydoc docstring define its command line, exactly as
DIPY's own ``dipy_*`` commands. The console entry points live in
:mod:`dipy_tractogen.workflows.cli`.
"""
