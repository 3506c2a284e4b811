"""The error a derivation raises when a step does not follow."""


class StepError(AssertionError):
    """A derivation step that does not follow from the previous one (or a certificate
    that cannot be established)."""
