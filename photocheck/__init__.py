"""photocheck: stop school photos of students without photo consent from being published."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("photocheck")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"
