"""The localization core on the oracle stand-in, as the mapping tests build it to localize in the maps they
save (not a test module)."""
from __future__ import annotations

from mast3r_ros.ros.core.localization_core import LocalizationCore
from mast3r_ros.ros.core.params import LocalizationParams


def stand_in_localization_core(oracle, dataset_root, image_size: int) -> LocalizationCore:
    """A ``LocalizationCore`` with the MASt3R front-end on ``oracle`` (``oracle_dataset`` = ``dataset_root``,
    network long side ``image_size``); the caller closes it."""
    from mast3r_ros.localization.frontends.mast3r import Mast3rFrontEnd

    params = LocalizationParams().replace({"frontend": "mast3r", "mast3r.image_size": image_size,
                                           "oracle_dataset": str(dataset_root)})
    return LocalizationCore(params, Mast3rFrontEnd(params.mast3r, model=oracle))
