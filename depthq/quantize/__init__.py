"""Quantizers: the Depthwise Quantizer and its special cases (VQ, PQ, scalar, coupled)."""

from depthq.quantize.quantizer import DepthwiseQuantizer, QuantizerOutput
from depthq.quantize.search import gather_codes, nearest_codes, nearest_codes_and_scores

__all__ = ["DepthwiseQuantizer", "QuantizerOutput", "gather_codes", "nearest_codes", "nearest_codes_and_scores"]
