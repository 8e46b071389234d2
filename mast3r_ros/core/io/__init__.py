"""Where bytes become images: files, encoded bytes, raw ``sensor_msgs/Image`` fields, rosbags.

Every entry point checks sizes before it allocates (the pixel limit on the header of an encoded
image, ``step`` / ``height`` against the data of a raw image, the file type and size before a
read) and raises :class:`~mast3r_ros.core.errors.ImageError` / ``InputError``; no ``cv2.error``,
Pillow or ``rosbags`` exception escapes. No ROS import: the nodes pass message fields.

Public API::

    from mast3r_ros.core.io import read_image_file, decode_image_bytes, decode_raw_image
    rgb = read_image_file("frame.png", max_pixels=InputConfig().max_image_pixels)
    rgb = decode_raw_image(msg.encoding, msg.height, msg.width, msg.step, msg.is_bigendian,
                           msg.data, max_pixels)
    for rec in read_bag("run.mcap", topics={"/cam/image_raw"}): rgb = rec.to_rgb(max_pixels)
"""

from mast3r_ros.core.io.bag import (
    CameraInfoRecord,
    CompressedImageRecord,
    ImageRecord,
    bag_topics,
    is_bag,
    read_bag,
)
from mast3r_ros.core.io.files import check_regular_file, read_regular_file
from mast3r_ros.core.io.header import probe_image_size
from mast3r_ros.core.io.image import (
    check_pixels,
    decode_depth_bytes,
    decode_image_bytes,
    read_depth_file,
    read_image_file,
)
from mast3r_ros.core.io.raw import (
    DEPTH_ENCODINGS,
    RAW_ENCODINGS,
    check_raw_image,
    decode_raw_depth,
    decode_raw_image,
)

__all__ = [
    "read_image_file",
    "read_depth_file",
    "decode_image_bytes",
    "decode_depth_bytes",
    "probe_image_size",
    "check_pixels",
    "check_raw_image",
    "decode_raw_image",
    "decode_raw_depth",
    "RAW_ENCODINGS",
    "DEPTH_ENCODINGS",
    "read_bag",
    "bag_topics",
    "is_bag",
    "ImageRecord",
    "CompressedImageRecord",
    "CameraInfoRecord",
    "check_regular_file",
    "read_regular_file",
]
