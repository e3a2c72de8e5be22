"""photocheck: stop school photos of students without photo consent from being published."""
import os

# onnxruntime for Linux (since 1.24) carries Microsoft's telemetry (1DS), on by default: it keeps a
# device id and an event queue under ~/.cache/Microsoft/DeveloperTools/.onnxruntime and may upload
# them. photocheck screens children's photos and never talks to the network, so the opt-out is set
# before onnxruntime can load, here, and so in every process photocheck starts (workers inherit
# it). ORT_TELEMETRY_DISABLED is the name onnxruntime's source reads; ORT_DISABLE_TELEMETRY the one
# its first release of the feature documented. Measured with onnxruntime 1.32.0: the two files are
# still written either way (docs/data-protection.md).
os.environ["ORT_TELEMETRY_DISABLED"] = "1"
os.environ["ORT_DISABLE_TELEMETRY"] = "1"


def __getattr__(name: str) -> str:
    """`__version__`, read from the package metadata when first asked for (importlib.metadata is
    slow to import, and most commands never need it)."""
    if name != "__version__":
        raise AttributeError(f"module 'photocheck' has no attribute {name!r}")
    from importlib.metadata import PackageNotFoundError, version

    try:
        v = version("photocheck")
    except PackageNotFoundError:  # running from a source tree without install
        v = "0.0.0"
    globals()["__version__"] = v
    return v
