"""The MASt3R network (ROS-free): configuration, safe checkpoint loading, preprocessing, inference."""
from .checkpoint import CheckpointError, file_sha256, load_network
from .config import RELEASED, ConfigError, Mast3rConfig, config_from_constructor
from .inference import InferenceConfig, Mast3rModel
from .network import Encoding, Mast3rNet, random_network
from .preprocess import ImageTransform, NetworkImage, preprocess_array, preprocess_file

__all__ = [
    "CheckpointError", "ConfigError", "Encoding", "ImageTransform", "InferenceConfig", "Mast3rConfig",
    "Mast3rModel", "Mast3rNet", "NetworkImage", "RELEASED", "config_from_constructor", "file_sha256",
    "load_network", "preprocess_array", "preprocess_file", "random_network",
]
