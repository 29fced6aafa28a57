"""A posed reference image that later queries are localized against (map-free mode, the localization
node's ``set_reference``), with ``mast3r-ros relocalize``'s solver (:mod:`mast3r_ros.localization.mapfree`).
"""
from __future__ import annotations

import numpy as np


class MapFreeReference:
    """The ``set_reference`` service's reference: one posed image; every later query is solved against
    it by ``mast3r-ros relocalize``'s solver (:mod:`mast3r_ros.localization.mapfree`: PnP on the
    reference's metric pointmap, then essential matrix + metric scale, then Procrustes) with the node's
    front-end: MASt3R predicts the reference's pointmap, the classical (SIFT) one takes its depth.

    Args:
        frontend: the node's front-end (its model and configuration are used).
        image: [H,W,3] uint8 RGB; K: [3,3]; depth: [H,W] float32 m registered to ``image``, 0 = none
            (required by the classical front-end, unused by MASt3R).
        T_map_ref: [4,4] reference camera (optical) to map pose.
    Raises:
        ValueError: the front-end cannot use this reference (named).
    """

    def __init__(self, frontend, image: np.ndarray, K: np.ndarray, depth: np.ndarray | None,
                 T_map_ref: np.ndarray):
        self.frontend, self.image, self.K, self.depth = frontend, image, K, depth
        self.T_map_ref = np.asarray(T_map_ref, np.float64)
        self.state = "INIT"  # LocState value: TRACKING after an answered query, LOST after a refusal
        if frontend.name == "classical":
            if depth is None or not np.any(depth > 0):
                raise ValueError("the classical front-end needs the reference's depth (depth_path, or "
                                 "use_current_frame with subscribe_depth)")
        else:  # encoded once, now: an image the model cannot take (e.g. not the stand-in's) is named here
            from mast3r_ros.model import preprocess_array

            self._model = ReferenceEncoded(frontend.model, preprocess_array(image, frontend.config.image_size).tensor)

    def localize(self, image: np.ndarray, K: np.ndarray):
        """:class:`~mast3r_ros.localization.mapfree.MapFreeResult` of a query ([H,W,3] uint8 RGB, K [3,3])."""
        from mast3r_ros.localization.mapfree import MapFreeQuery, relocalize_classical, relocalize_mast3r

        query = MapFreeQuery(image, K)
        if self.frontend.name == "classical":
            res = relocalize_classical(self.image, self.K, self.depth, self.T_map_ref, query, self.frontend.config)
        else:
            res = relocalize_mast3r(self._model, self.image, self.K, self.T_map_ref, query, self.frontend.config)
        self.state = "TRACKING" if res.T_map_cam is not None else "LOST"
        return res


class ReferenceEncoded:
    """A MASt3R-interface model whose encoding of the reference image is computed once: ``encode`` of that
    very tensor returns it (each query then costs one encoder pass, not two); everything else is the
    model's.

    Args:
        model: the front-end's model (``encode``, ``infer``).
        reference: [1,3,H,W] the reference's network tensor (``preprocess_array``).
    """

    def __init__(self, model, reference):
        self.model, self._reference = model, reference
        self._encoding = model.encode(reference)

    def encode(self, images):
        if images.shape == self._reference.shape and bool((images == self._reference).all()):
            return self._encoding
        return self.model.encode(images)

    def infer(self, enc1, enc2, heads1=None, heads2=None):
        kw = {k: v for k, v in (("heads1", heads1), ("heads2", heads2)) if v is not None}
        return self.model.infer(enc1, enc2, **kw)
