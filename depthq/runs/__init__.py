"""Run folders, opened once and worked on: the orchestration above the library.

- ``SavedRun.open(run_dir)``: the weights, their record and digest, the data module, the prior;
- ``evaluate_run`` / ``write_eval`` / ``read_eval`` / ``compare_runs``: ``depthq eval`` and ``compare``;
- ``train_prior`` / ``sample``: the run's learned prior;
- ``codec_of`` / ``compress_split``: ``depthq compress`` and ``decompress``;
- ``evaluate_full_resolution``: ``depthq eval --full-resolution`` (whole images, CompressAI's files).

Importing this package registers the result sections it composes (codec anchors, .dqz files),
so ``read_eval`` reads them back.
"""

from depthq.runs import sections  # noqa: F401  (registers the readers of the sections)
from depthq.runs.codec import RunCodec, SplitCompression, codec_of, compress_split
from depthq.runs.evaluation import RunEvaluation, evaluate_run, prior_is_current
from depthq.runs.full_resolution import FullResolution, evaluate_full_resolution
from depthq.runs.prior import Samples, sample, train_prior
from depthq.runs.report import (
    Comparison,
    EvalReport,
    compare_runs,
    default_eval_dir,
    read_eval,
    sample_reconstructions,
    write_eval,
)
from depthq.runs.saved import SavedRun

__all__ = [
    "Comparison",
    "EvalReport",
    "FullResolution",
    "RunCodec",
    "RunEvaluation",
    "Samples",
    "SavedRun",
    "SplitCompression",
    "codec_of",
    "compare_runs",
    "compress_split",
    "default_eval_dir",
    "evaluate_full_resolution",
    "evaluate_run",
    "prior_is_current",
    "read_eval",
    "sample",
    "sample_reconstructions",
    "train_prior",
    "write_eval",
]
