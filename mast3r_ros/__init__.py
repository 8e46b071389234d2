"""mast3r_ros: camera relocalization with MASt3R, as a pure core library plus a thin ROS 2 shell.

This file has no side effects beyond extending ``__path__``: when the package is imported from a
source checkout, the generated interface modules (``mast3r_ros.msg``, ``mast3r_ros.srv``) live in
the installed copy of the package (site-packages or a colcon install space), so the installed
directory is appended to the search path of this package. Source modules always come first.
"""

from pkgutil import extend_path

__path__ = extend_path(__path__, __name__)
