"""Quantizers: the Depthwise Quantizer and its special cases (VQ, PQ, scalar, coupled), and the
quantizers DQ is compared with (FSQ, LFQ, residual VQ/DQ), all behind one interface
(:class:`~depthq.quantize.output.Quantizer`)."""

from depthq.quantize.digits import digits_to_index, index_to_digits
from depthq.quantize.estimators import ESTIMATORS, rotation_trick
from depthq.quantize.fsq import FiniteScalarQuantizer
from depthq.quantize.lfq import LookupFreeQuantizer
from depthq.quantize.output import Quantizer, QuantizerOutput
from depthq.quantize.quantizer import Assignment, DepthwiseQuantizer
from depthq.quantize.residual import ResidualQuantizer
from depthq.quantize.search import gather_codes, nearest_codes, nearest_codes_and_scores

__all__ = [
    "ESTIMATORS",
    "Assignment",
    "DepthwiseQuantizer",
    "FiniteScalarQuantizer",
    "LookupFreeQuantizer",
    "Quantizer",
    "QuantizerOutput",
    "ResidualQuantizer",
    "digits_to_index",
    "gather_codes",
    "index_to_digits",
    "nearest_codes",
    "nearest_codes_and_scores",
    "rotation_trick",
]
