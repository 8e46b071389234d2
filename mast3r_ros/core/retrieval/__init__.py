"""Global-descriptor retrieval: descriptors and a faiss index."""

from mast3r_ros.core.retrieval.descriptors import TINY_DESCRIPTOR, tiny_image_descriptor
from mast3r_ros.core.retrieval.index import GlobalIndex, l2_normalize

__all__ = ["TINY_DESCRIPTOR", "tiny_image_descriptor", "GlobalIndex", "l2_normalize"]
