"""mast3r_ros.matching (ROS-free core): dense descriptor matching for MASt3R outputs.

Public API
----------
* :func:`fast_reciprocal_nn` - FRM (paper sec. 3.3), official semantics, exact NN backends.
* :func:`match_symmetric` - both directions merged, conf = min of the two confidences, post-filters.
* :func:`select_crop_pairs`, :func:`coarse_to_fine_match` - coarse-to-fine matching (paper sec. 3.4).
* :class:`MatchingConfig`, :class:`CoarseToFineConfig` - the options.
* :func:`build_index` - exact maximum-inner-product NN index ('torch' blocked matmul, 'faiss').

Conventions: descriptor maps are [H, W, D]; pixel coordinates are int64 (x, y) = (column, row) of
integer pixel centres; flat pixel index = y * W + x.
"""
from .coarse_to_fine import CoarseToFineConfig, coarse_to_fine_match
from .config import MatchingConfig
from .crops import crop_slice, select_crop_pairs, working_resolution
from .frm import fast_reciprocal_nn
from .index import build_index
from .symmetric import match_symmetric

__all__ = ["MatchingConfig", "CoarseToFineConfig", "fast_reciprocal_nn", "match_symmetric",
           "select_crop_pairs", "coarse_to_fine_match", "build_index", "crop_slice",
           "working_resolution"]
