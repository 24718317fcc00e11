"""Sharded generation: the parts of one run, made by independent jobs.

A generation run draws its streamlines in *pieces*: the requested count,
``n_streamlines``, is cut into ``ceil(n_streamlines / chunk_size)`` pieces of
at most ``chunk_size`` streamlines (:func:`plan_pieces`, each class's count
split in proportion), and each piece runs the adaptive draw-decode-filter
rounds of :func:`~dipy_tractogen.generation.pipeline.iter_generate` on its
own random stream (:func:`piece_random_state`): piece 0 on the run's
``seed`` itself (a run of one piece, up to ``chunk_size`` streamlines, is
the run of earlier versions, bit for bit), piece ``p`` on
``SeedSequence(seed, spawn_key=(p,))``. No piece depends on another.

Shard ``i`` of ``n`` (:class:`ShardSpec`, 1-based as in ``split -n l/i/n``)
runs the pieces ``[floor((i-1) K / n), floor(i K / n))`` of the ``K`` pieces
(:func:`shard_pieces`) and writes them: the parts are disjoint, each is
deterministic, and the parts in shard order hold exactly the streamlines,
bundles and conditions, in the same order, that one run with the same seed,
count, chunk size and options writes. DIPY's ``dipy_concatenate_tractograms``
(or ``trx_concatenate_tractograms``) joins them; :func:`check_shards` checks
that parts belong together (same run, every part once) and writes the joined
file's provenance sidecar (bundle names, the merged report, "sharded").

Nothing here imports TensorFlow: the command checks ``--shard`` and prints
the commands of a sharded run (:func:`shard_command_lines`,
:func:`slurm_array_script`) before any model is loaded.
"""

import glob
import json
import os
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dipy_tractogen._json import jsonable
from dipy_tractogen.errors import InputError
from dipy_tractogen.io.outputs import atomic_output
from dipy_tractogen.io.provenance import file_md5
from dipy_tractogen.io.tractograms import SIDECAR_FORMAT, sidecar_path

__all__ = [
    "ShardSpec",
    "parse_shard",
    "n_pieces",
    "plan_pieces",
    "piece_random_state",
    "shard_pieces",
    "shard_size",
    "iter_pieces",
    "shard_provenance",
    "check_shards",
    "shard_command_lines",
    "slurm_array_script",
]


@dataclass(frozen=True)
class ShardSpec:
    """Part ``index`` (1-based) of ``count`` parts of one generation run."""

    index: int
    count: int

    def __str__(self):
        return f"{self.index}/{self.count}"


def parse_shard(shard):
    """A :class:`ShardSpec` from ``"i/n"``, ``(i, n)`` or a ShardSpec.

    Parameters
    ----------
    shard : str, tuple of int or ShardSpec
        ``i`` in ``1..n``.

    Returns
    -------
    ShardSpec

    Raises
    ------
    InputError
        Not two integers, ``n < 1``, ``i`` outside ``1..n`` (one line).
    """
    if isinstance(shard, ShardSpec):
        shard = (shard.index, shard.count)
    if isinstance(shard, str):
        parts = shard.strip().split("/")
        try:
            if len(parts) != 2:
                raise ValueError
            shard = (int(parts[0]), int(parts[1]))
        except ValueError:
            raise InputError(
                f"shard must be i/n with integers 1 <= i <= n, got {shard!r}"
            ) from None
    try:
        i, n = (int(v) for v in shard)
        if any(isinstance(v, bool) or int(v) != v for v in shard):
            raise ValueError
    except (TypeError, ValueError):
        raise InputError(
            f"shard must be i/n with integers 1 <= i <= n, got {shard!r}"
        ) from None
    if n < 1:
        raise InputError(f"shard {i}/{n}: the number of shards must be >= 1")
    if not 1 <= i <= n:
        raise InputError(f"shard {i}/{n}: the shard index must be in 1..{n}")
    return ShardSpec(i, n)


def n_pieces(n_streamlines, chunk_size):
    """Pieces of a run: ``ceil(n_streamlines / chunk_size)``."""
    return max(1, -(-int(n_streamlines) // int(chunk_size)))


def plan_pieces(counts, chunk_size):
    """Cut a run's class counts into the counts of its pieces.

    Piece ``p`` covers the requested positions ``[p c, min((p + 1) c, N))``
    (``c = chunk_size``, ``N`` the total); class ``k`` of count ``n_k`` gets
    ``floor(n_k e / N) - floor(n_k s / N)`` of them for a piece spanning
    ``[s, e)``: the pieces of each class add up to its count, and a piece
    holds about ``c`` streamlines in the run's proportions. One piece when
    ``N <= c``: the counts themselves.

    Parameters
    ----------
    counts : dict
        Class -> requested count (>= 0).
    chunk_size : int

    Returns
    -------
    pieces : list of dict
        Class -> count, per piece (classes with no streamline left out).
    """
    counts = {k: int(v) for k, v in counts.items()}
    total = sum(counts.values())
    k_pieces = n_pieces(total, chunk_size)
    if k_pieces == 1:
        return [dict(counts)]
    c = int(chunk_size)
    pieces = []
    for p in range(k_pieces):
        s, e = p * c, min((p + 1) * c, total)
        piece = {k: v * e // total - v * s // total for k, v in counts.items()}
        pieces.append({k: v for k, v in piece.items() if v > 0})
    return pieces


def piece_random_state(seed, piece):
    """The random state of piece ``piece`` of a run of ``seed``.

    Piece 0 draws from ``seed`` itself (the stream of a one-piece run, as
    before pieces existed); piece ``p > 0`` from
    ``numpy.random.SeedSequence(seed, spawn_key=(p,))``, independent streams.
    """
    if int(piece) == 0:
        return int(seed)
    return np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(piece,)))


def shard_pieces(k_pieces, shard=None):
    """The pieces (a range) that shard ``shard`` of a run of ``k_pieces`` makes.

    Raises
    ------
    InputError
        More shards than pieces (a shard would be empty).
    """
    if shard is None:
        return range(int(k_pieces))
    shard = parse_shard(shard)
    if shard.count > k_pieces:
        raise InputError(
            f"shard {shard}: the run has {k_pieces} piece(s) of at most "
            f"chunk_size streamlines; use at most {k_pieces} shard(s), or a "
            "smaller chunk_size (the same for every shard)"
        )
    i, n = shard.index - 1, shard.count
    return range(i * k_pieces // n, (i + 1) * k_pieces // n)


def shard_size(n_streamlines, chunk_size, shard=None):
    """Streamlines shard ``shard`` requests (about: classes round per piece)."""
    n, c = int(n_streamlines), int(chunk_size)
    pieces = shard_pieces(n_pieces(n, c), shard)
    return sum(min(c, n - p * c) for p in pieces)


def iter_pieces(
    iter_generate,
    decode,
    sampler,
    counts,
    *,
    seed,
    chunk_size,
    report,
    shard=None,
    **kwargs,
):
    """Run the pieces of a run (or of one shard), one after the other.

    Parameters
    ----------
    iter_generate : callable
        :func:`~dipy_tractogen.generation.pipeline.iter_generate`.
    decode, sampler, counts
        As for ``iter_generate`` (``counts``: the whole run's).
    seed : int
        The run's seed.
    chunk_size : int
    report : GenerationReport
        Receives the sum of the pieces' reports (requested, produced, drawn,
        rejected; the first reason that is not ``"complete"``).
    shard : str, tuple or ShardSpec, optional
        Make only this shard's pieces.
    **kwargs
        ``filters``, ``budget`` of ``iter_generate`` (the budget is per
        piece, a multiple of its count).

    Yields
    ------
    As ``iter_generate``.
    """
    pieces = plan_pieces(counts, chunk_size)
    chosen = shard_pieces(len(pieces), shard)
    report.requested, report.produced, report.rejected = {}, {}, {}
    report.n_drawn, report.reason = 0, "complete"
    for p in chosen:
        part = type(report)(requested={})
        yield from iter_generate(
            decode,
            sampler,
            pieces[p],
            chunk_size=chunk_size,
            random_state=piece_random_state(seed, p),
            report=part,
            **kwargs,
        )
        for name in ("requested", "produced", "rejected"):
            mine = getattr(report, name)
            for k, v in getattr(part, name).items():
                mine[k] = mine.get(k, 0) + v
        report.n_drawn += part.n_drawn
        if report.reason == "complete" and part.reason != "complete":
            report.reason = part.reason


def shard_provenance(shard, *, seed, n_streamlines, chunk_size):
    """The ``shard`` entry of a part's provenance (None for a whole run)."""
    if shard is None:
        return None
    shard = parse_shard(shard)
    k = n_pieces(n_streamlines, chunk_size)
    pieces = shard_pieces(k, shard)
    return {
        "index": shard.index,
        "count": shard.count,
        "seed": int(seed),
        "n_requested_total": int(n_streamlines),
        "chunk_size": int(chunk_size),
        "pieces": [pieces.start, pieces.stop],
        "n_pieces": k,
    }


#: provenance entries that differ between the parts of one run
_PER_PART = ("shard", "n_requested", "report")


def _part_info(path):
    side = Path(sidecar_path(path))
    if not Path(path).exists():
        raise InputError(f"part not found: {path}")
    try:
        with open(side, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError) as exc:
        raise InputError(
            f"cannot read the provenance sidecar {side} of part {path}: {exc}"
        ) from None
    meta = data.get("metadata") if isinstance(data, dict) else None
    if not isinstance(meta, dict) or not isinstance(meta.get("shard"), dict):
        raise InputError(
            f"{path} is not a part of a sharded run (no 'shard' in its provenance "
            f"{side.name}; made with dipy_generate_tractogram --shard i/n)"
        )
    return data, meta


def _expand(parts):
    if isinstance(parts, (str, os.PathLike)):
        parts = [parts]
    files = []
    for item in parts:
        for text in str(item).split(","):
            text = text.strip()
            if not text:
                continue
            found = sorted(glob.glob(text)) if glob.has_magic(text) else [text]
            if not found:
                raise InputError(f"no part matches {text}")
            files.extend(found)
    if not files:
        raise InputError("no part given")
    return list(dict.fromkeys(files))


def check_shards(parts, *, joined=None, force=False, claim=None):
    """Check that tractograms are the parts of one sharded run; describe the join.

    The parts must come from the same run: the same seed, total count,
    chunk size, number of shards, model, source and filters (their
    provenance, but for the per-part entries), and every shard ``1..n``
    exactly once. With ``joined`` (the tractogram DIPY's or TRX's
    concatenation made of them), its streamline count must be the parts'
    sum; its provenance sidecar ``<joined>.json`` is then written: the
    bundle names, the shared provenance with ``sharded`` (seed, count,
    shards, the parts and their MD5) and the merged report, so that
    :func:`~dipy_tractogen.io.tractograms.load_bundles` names its bundles.

    Parameters
    ----------
    parts : str, path-like or list of them
        Part files, glob patterns or comma-separated lists.
    joined : str or path-like, optional
        The concatenated tractogram.
    force : bool, optional
        Overwrite an existing sidecar of ``joined``.
    claim : OutputClaim, optional
        A claim holding that sidecar (staged in it, see
        :func:`~dipy_tractogen.io.outputs.atomic_output`).

    Returns
    -------
    summary : dict
        ``seed``, ``n_requested``, ``shards``, ``parts`` (paths in shard
        order), ``n_streamlines`` (the parts' sum), ``provenance`` (of the
        whole run), and ``sidecar`` when one was written.

    Raises
    ------
    InputError
        A part without shard provenance, parts of different runs, a
        missing or repeated shard, a joined file of another count (one line).
    """
    files = _expand(parts)
    infos = [(f, *_part_info(f)) for f in files]
    first = infos[0][2]
    shared = {k: v for k, v in first.items() if k not in _PER_PART}
    spec = first["shard"]
    keys = ("seed", "n_requested_total", "chunk_size", "count")
    by_index = {}
    for path, _, meta in infos:
        sh = meta["shard"]
        for key in keys:
            if sh.get(key) != spec.get(key):
                raise InputError(
                    f"{files[0]} and {path} are parts of different runs ({key} "
                    f"{spec.get(key)} and {sh.get(key)})"
                )
        other = {k: v for k, v in meta.items() if k not in _PER_PART}
        if other != shared:
            diff = sorted(
                k for k in set(other) | set(shared) if other.get(k) != shared.get(k)
            )
            raise InputError(
                f"{files[0]} and {path} are parts of different runs (their "
                f"{', '.join(diff)} differ)"
            )
        if sh["index"] in by_index:
            raise InputError(
                f"shard {sh['index']}/{sh['count']} given twice: "
                f"{by_index[sh['index']][0]} and {path}"
            )
        by_index[sh["index"]] = (path, meta)
    n = int(spec["count"])
    missing = [str(i) for i in range(1, n + 1) if i not in by_index]
    if missing:
        raise InputError(
            f"missing shard(s) {', '.join(missing)} of {n} (got {len(by_index)})"
        )
    ordered = [by_index[i] for i in range(1, n + 1)]
    sidecars = {p: data for p, data, _ in infos}
    n_total = sum(int(sidecars[p].get("n_streamlines", 0)) for p, _ in ordered)
    report = _merged_report([m.get("report") or {} for _, m in ordered])
    provenance = {
        **shared,
        "n_requested": int(spec["n_requested_total"]),
        "sharded": {
            "seed": int(spec["seed"]),
            "n_requested": int(spec["n_requested_total"]),
            "chunk_size": int(spec["chunk_size"]),
            "shards": n,
            "parts": [
                {"path": os.path.abspath(p), "md5": file_md5(p)}
                if os.path.isfile(p)
                else {"path": os.path.abspath(p)}
                for p, _ in ordered
            ],
        },
        "report": report,
    }
    summary = {
        "seed": int(spec["seed"]),
        "n_requested": int(spec["n_requested_total"]),
        "shards": n,
        "parts": [p for p, _ in ordered],
        "n_streamlines": n_total,
        "provenance": provenance,
    }
    if joined is not None:
        summary["sidecar"] = _write_joined(
            joined, ordered, sidecars, n_total, provenance, force, claim
        )
    return summary


def _merged_report(reports):
    out = {"requested": {}, "produced": {}, "rejected": {}, "n_drawn": 0}
    for r in reports:
        for name in ("requested", "produced", "rejected"):
            for k, v in (r.get(name) or {}).items():
                out[name][k] = out[name].get(k, 0) + v
        out["n_drawn"] += int(r.get("n_drawn") or 0)
    reasons = [
        r.get("reason") for r in reports if r.get("reason") not in (None, "complete")
    ]
    out["reason"] = reasons[0] if reasons else "complete"
    out["n_produced"] = int(sum(out["produced"].values()))
    out["complete"] = all(
        out["produced"].get(k, 0) >= v for k, v in out["requested"].items()
    )
    return out


def _write_joined(joined, ordered, sidecars, n_total, provenance, force, claim):
    """Check the joined file's count; write its provenance sidecar."""
    import nibabel as nib

    joined = Path(joined)
    if not joined.exists():
        raise InputError(f"joined tractogram not found: {joined}")
    try:
        if joined.suffix.lower() == ".trx":
            import trx.trx_file_memmap as tmm

            trx = tmm.load(str(joined))
            try:
                count = len(trx.streamlines)
            finally:
                trx.close()
        else:
            count = int(
                nib.streamlines.load(str(joined), lazy_load=True).header[
                    "nb_streamlines"
                ]
            )
    except Exception as exc:
        raise InputError(f"cannot read the joined tractogram {joined}: {exc}") from None
    if count != n_total:
        raise InputError(
            f"{joined} holds {count} streamlines, its parts {n_total}: not their "
            "concatenation"
        )
    first = sidecars[ordered[0][0]]
    side = sidecar_path(joined)
    data = {
        "format": SIDECAR_FORMAT,
        "version": 1,
        "tractogram": joined.name,
        "tractogram_format": joined.suffix.lstrip(".").lower(),
        "n_streamlines": int(n_total),
        "bundle_names": first.get("bundle_names") or {},
        "bundle_runs": None,
        "data_per_streamline": first.get("data_per_streamline") or {},
        "metadata": provenance,
    }
    with atomic_output(side, force=force, claim=claim) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(jsonable(data), f, indent=2)
    return side


def _without(argv, option, takes_value=True):
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg == option:
            skip = takes_value
            continue
        if arg.startswith(option + "="):
            continue
        out.append(arg)
    return out


def _option(argv, option, default):
    for i, arg in enumerate(argv):
        if arg == option and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(option + "="):
            return arg.split("=", 1)[1]
    return default


def _part_argv(argv, shard_text, stem, ext):
    argv = list(argv)
    for option in (
        "--shard",
        "--print_shards",
        "--out_tractogram",
        "--out_report",
        "--out_snapshot",
    ):
        argv = _without(argv, option)
    argv = _without(argv, "--no_snapshot", takes_value=False)
    return [
        *argv,
        "--shard",
        shard_text,
        "--out_tractogram",
        f"{stem}_part{shard_text.replace('/', 'of')}{ext}",
        "--out_report",
        f"{stem}_part{shard_text.replace('/', 'of')}.html",
        "--no_snapshot",
    ]


def shard_command_lines(argv, n):
    """The commands of a run split into ``n`` shards, and of the join.

    Parameters
    ----------
    argv : list of str
        A ``dipy_generate_tractogram`` command line (its name first), the
        whole run's (its ``--print_shards``/``--shard`` options are dropped).
    n : int
        Shards.

    Returns
    -------
    lines : list of str
        ``n`` commands (part ``i`` writes ``<stem>_part<i>of<n>.trx``, its
        report, no picture), then the concatenation with DIPY's
        ``dipy_concatenate_tractograms`` and the check that writes the
        joined file's provenance.
    """
    shard_pieces(n, (n, n))  # n >= 1
    stem, ext = os.path.splitext(_option(argv, "--out_tractogram", "generated.trx"))
    out_dir = _option(argv, "--out_dir", "")
    where = (lambda name: os.path.join(out_dir, name)) if out_dir else (lambda x: x)
    lines = [
        shlex.join(_part_argv(argv, f"{i}/{n}", stem, ext)) for i in range(1, n + 1)
    ]
    parts = where(f"{stem}_part*of{n}{ext}")
    lines.append(
        shlex.join(
            [
                "dipy_concatenate_tractograms",
                *[where(f"{stem}_part{i}of{n}{ext}") for i in range(1, n + 1)],
                "--out_dir",
                out_dir or ".",
                "--out_tractogram",
                stem,
                "--out_extension",
                ext.lstrip("."),
            ]
        )
    )
    lines.append(
        shlex.join(
            [
                "dipy_generate_tractogram",
                "--check_shards",
                parts,
                "--out_dir",
                out_dir or ".",
                "--out_tractogram",
                f"{stem}{ext}",
            ]
        )
    )
    return lines


def slurm_array_script(argv, n, *, job_name="tractogen", time="01:00:00", cpus=4):
    """A SLURM array job running the ``n`` shards of a run (a sketch to adapt).

    Parameters
    ----------
    argv : list of str
        As for :func:`shard_command_lines`.
    n : int
    job_name, time : str, optional
    cpus : int, optional
        ``--cpus-per-task``.

    Returns
    -------
    script : str
        ``sbatch`` it; join the parts afterwards (the last lines of
        :func:`shard_command_lines`), e.g. in a job with
        ``--dependency=afterok:<array job id>``.
    """
    shard_pieces(n, (n, n))
    stem, ext = os.path.splitext(_option(argv, "--out_tractogram", "generated.trx"))
    cmd = shlex.join(_part_argv(argv, "@@/" + str(n), stem, ext))
    cmd = cmd.replace("@@", "${SLURM_ARRAY_TASK_ID}")
    return "\n".join(
        [
            "#!/bin/bash",
            f"#SBATCH --job-name={job_name}",
            f"#SBATCH --array=1-{n}",
            f"#SBATCH --cpus-per-task={cpus}",
            f"#SBATCH --time={time}",
            "export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK}",
            cmd,
            "",
        ]
    )
