"""All versioned routes under one router."""

from fastapi import APIRouter

from service.api.routes import admin, auth, author, exposure, quizzes

api_router = APIRouter()
api_router.include_router(auth.router)
api_router.include_router(author.router)
api_router.include_router(quizzes.router)
api_router.include_router(admin.router)
api_router.include_router(exposure.router)
