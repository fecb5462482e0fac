"""Engine errors. The engine is a library: it raises these, the service translates them."""


class EngineError(Exception):
    """The engine could not render."""


class InvalidImage(EngineError):
    """The source image is not usable."""


class RenderCancelled(EngineError):
    """The caller asked the render to stop."""
