"""The MASt3R network, checkpoint loading, preprocessing and the inference engine.

Public API::

    from mast3r_ros.core.model import load_model, InferenceEngine, preprocess_image
    model = load_model(path, device="cpu")          # official .pth or Hugging Face directory
    out1, out2 = model.forward_pair(img1, img2)     # HeadOutput each; out2.pts3d in view 1's frame
"""

from mast3r_ros.core.model.args import RELEASE_ARGS, ModelArgs, parse_model_args
from mast3r_ros.core.model.device import resolve_device, resolve_precision
from mast3r_ros.core.model.engine import EncodedImages, InferenceEngine
from mast3r_ros.core.model.mast3r import HEADS_ALL, HeadOutput, Mast3rModel, check_image
from mast3r_ros.core.model.preprocess import (
                                              ImageTransform,
                                              PreprocessedImage,
                                              normalize_rgb,
                                              preprocess_image,
)
from mast3r_ros.core.model.weights import build_model, load_model, read_checkpoint, save_hf

__all__ = [
    "RELEASE_ARGS",
    "ModelArgs",
    "parse_model_args",
    "resolve_device",
    "resolve_precision",
    "EncodedImages",
    "InferenceEngine",
    "HEADS_ALL",
    "HeadOutput",
    "Mast3rModel",
    "check_image",
    "ImageTransform",
    "PreprocessedImage",
    "normalize_rgb",
    "preprocess_image",
    "build_model",
    "load_model",
    "read_checkpoint",
    "save_hf",
]
