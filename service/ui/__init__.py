"""Web UIs served by the delivery service itself: students at ``/``, admins at ``/admin``,
authors at ``/author``.

Server-rendered Jinja2 pages over the same service functions as the JSON API, with the
API's own token kept in an httpOnly cookie (:mod:`service.ui.session`). Templates, CSS and
JavaScript ship in this package; nothing is fetched from elsewhere at run time.

Register with ``app.include_router(service.ui.router)``.
"""

from fastapi import APIRouter

from service.ui import admin_pages, auth_pages, author_pages, exposure_pages, student_pages

router = APIRouter(include_in_schema=False)
router.include_router(auth_pages.router)
router.include_router(student_pages.router)
router.include_router(admin_pages.router)
router.include_router(exposure_pages.router)
router.include_router(author_pages.router)

__all__ = ["router"]
