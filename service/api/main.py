"""All versioned routes under one router, with every error status the service answers documented."""

from fastapi import APIRouter

from service.api.routes import admin, auth, author, exposure, quizzes
from service.schemas import Problem, ValidationProblem


def _problem(description: str) -> dict:
    return {"model": Problem, "description": description}


# What any route may answer besides its success: the schemas of the bodies are Problem (one message)
# and, for 422, also ValidationProblem (one issue per field). Retry-After comes with 429 and 503.
ERROR_RESPONSES = {
    400: _problem("malformed request (e.g. a Content-Length that is not a number)"),
    401: _problem("no valid token (missing, expired, signed out) or wrong credentials"),
    403: _problem("the token lacks the role, or names another tenant"),
    404: _problem("no such resource in the caller's tenant"),
    409: _problem("conflicts with the current state (e.g. an answer that cannot change)"),
    410: _problem("the quiz expired"),
    413: _problem("request body over the size limit"),
    422: {"model": Problem | ValidationProblem, "description": "a field is invalid; the message names it"},
    429: _problem("too many failed logins; retry after Retry-After seconds"),
    503: _problem("the database is unavailable or overloaded; retry after Retry-After seconds"),
}

api_router = APIRouter(responses=ERROR_RESPONSES)
api_router.include_router(auth.router)
api_router.include_router(author.router)
api_router.include_router(quizzes.router)
api_router.include_router(admin.router)
api_router.include_router(exposure.router)
