"""Error types. Each carries a one-line, user-facing message; the CLI prints it without a traceback."""


class InspectorError(Exception):
    """Base class for every error the daemon reports to a person."""

    exit_code = 1


class ConfigError(InspectorError):
    """Invalid configuration: names the bad key and value."""

    exit_code = 2


class CameraError(InspectorError):
    """The camera could not be opened or stopped delivering frames."""


class SourceExhausted(CameraError):
    """A finite source (replay with loop: false) delivered its last frame: drain and stop."""


class BadFrameError(InspectorError):
    """A frame that cannot be inspected (corrupt, wrong pixel format, too small…)."""

    def __init__(self, message: str, kind: str = "bad_frame"):
        super().__init__(message)
        self.kind = kind


class WireError(InspectorError):
    """A malformed or oversized message on a socket."""


class ModelIntegrityError(InspectorError):
    """A model artifact whose sha256 does not match its manifest, or a malformed manifest."""


class ModelNotFoundError(InspectorError):
    """No such model or version in the model repository."""
