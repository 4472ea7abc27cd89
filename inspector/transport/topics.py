"""PUB/SUB topic names. Each topic frame ends with '.', so prefix matching is exact per inspection."""

RESULT = "result"
GRADCAM = "gradcam"


def topic(kind: str, inspection: str) -> bytes:
    """b"result.quality." — subscribing to it never matches result.qualityx."""
    return f"{kind}.{inspection}.".encode()


def subscription(prefix: str) -> bytes:
    """Subscription bytes for a user-given topic: 'result.quality' -> b'result.quality.', '' -> all."""
    if not prefix:
        return b""
    return prefix.encode() if prefix.endswith(".") else (prefix + ".").encode()


def topic_name(frame: bytes) -> str:
    return frame.decode(errors="replace").rstrip(".")
