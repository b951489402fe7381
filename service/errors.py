"""Domain errors with the HTTP status they map to; the message names the field or the id."""

from __future__ import annotations


class ServiceError(Exception):
    status_code = 400

    def __init__(self, detail: str):
        super().__init__(detail)
        self.detail = detail


class NotFound(ServiceError):
    status_code = 404


class Forbidden(ServiceError):
    status_code = 403


class Conflict(ServiceError):
    status_code = 409


class Gone(ServiceError):
    status_code = 410


class Invalid(ServiceError):
    status_code = 422
