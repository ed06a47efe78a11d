"""Named failures of use cases; entry points map them to HTTP codes and messages."""


class ServiceError(Exception):
    http_status = 400


class Invalid(ServiceError):
    """Bad input. `fields` maps a field name to its problems, so a form can show each one
    beside its field (all at once); the message lists them all."""

    http_status = 422

    def __init__(self, message: str, fields: dict[str, list[str]] | None = None):
        super().__init__(message)
        self.fields = fields or {}


class NotFound(ServiceError):
    http_status = 404


class Forbidden(ServiceError):
    http_status = 403


class AuthFailed(ServiceError):
    http_status = 401


class NotApproved(ServiceError):
    """A gate refused: the content was not approved, or the approval no longer matches it."""

    http_status = 409


class WrongState(ServiceError):
    http_status = 409


class BadMesh(ServiceError):
    http_status = 422

    def __init__(self, message: str, code: str = "bad_mesh"):
        super().__init__(message)
        self.code = code


class PrinterProblem(ServiceError):
    http_status = 409
