"""create_app(): the FastAPI application with its routers, pages, static files and error handlers."""

import gc
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from anyio import to_thread
from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from sqlalchemy import text
from starlette.middleware.sessions import SessionMiddleware

from app.config import Settings, get_settings
from app.db import make_engine, make_sessionmaker
from app.deps import SessionDep, csrf_protect, guard_request
from app.errors import document_errors, install_error_handlers
from app.middleware import RequestGuardMiddleware, SecurityHeadersMiddleware
from app.pages import ROOT, make_templates
from app.export.routes import api as export_api
from app.jobs.routes import api as jobs_api
from app.jobs.routes import pages as jobs_pages
from app.labeling.routes import api as tasks_api
from app.labeling.fastpath import install as install_fast_path, threads as fast_path_threads
from app.labeling.routes import labeling_api
from app.labeling.routes import pages as labeling_pages
from app.models.routes import api as models_api
from app.models.routes import pages as models_pages
from app.projects.routes import api as projects_api
from app.projects.routes import pages as projects_pages
from app.prompts.routes import api as prompts_api
from app.prompts.routes import pages as prompts_pages
from app.review.pages import pages as review_pages
from app.review.routes import api as review_api
from app.users.routes import api as users_api
from app.users.routes import pages as users_pages

API_PREFIX = "/api/v1"


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the web application; refuses to start with a missing or sample secret key."""
    settings = settings or get_settings()
    secret_key = settings.resolve_secret_key()

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Sync routes run in anyio's threadpool, 40 threads unless told. Under load, 40 threads taking
        # turns at the GIL cost more CPU than they overlap database waits: 12 served a 50-labeler load
        # test with less CPU per judgment and a lower p95 (README, Labeling queue).
        to_thread.current_default_thread_limiter().total_tokens = settings.web_threads
        # What start-up made (modules, routes, schemas: over 100,000 objects) stays for the process's life:
        # keep it out of the garbage collector's full passes, each ~40 ms with the GIL held otherwise.
        gc.freeze()
        _app.state.queue_threads = fast_path_threads(settings.web_threads)  # fresh when an app starts again
        yield
        _app.state.queue_threads.shutdown()
        gc.unfreeze()  # collectable again (a test process starts and stops many apps)

    app = FastAPI(
        lifespan=lifespan,
        title="Preflab",
        version="0.1.0",
        summary="Human preference rankings for language models, as datasets and trained models.",
        dependencies=[Depends(csrf_protect), Depends(guard_request)],
        docs_url="/api/docs",
        swagger_ui_oauth2_redirect_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # One connection per route thread, kept; as many again when the queue's threads (app/labeling/fastpath.py)
    # and the routes' are all busy at once, and a few for what holds one outside a thread (closing a session).
    app.state.engine = make_engine(settings.sqlalchemy_url, pool_size=settings.web_threads,
                                   max_overflow=settings.web_threads + 10)
    app.state.queue_threads = fast_path_threads(settings.web_threads)  # threads start on first use
    app.state.sessionmaker = make_sessionmaker(app.state.engine)
    app.state.templates = make_templates()

    # Added last runs first: body limit and NUL refusal, then security headers, then the session cookie.
    app.add_middleware(
        SessionMiddleware, secret_key=secret_key, session_cookie="preflab_session",
        max_age=settings.session_days * 86400, same_site="lax",
    )
    app.add_middleware(SecurityHeadersMiddleware, secure_cookies=settings.secure_cookies)
    app.add_middleware(RequestGuardMiddleware, max_bytes=settings.max_body_bytes)
    install_error_handlers(app)

    for router in (users_api, projects_api, prompts_api, tasks_api, labeling_api, jobs_api, models_api, review_api,
                   export_api):
        document_errors(router)
        app.include_router(router, prefix=API_PREFIX)
    install_fast_path(app, API_PREFIX)  # in front of the routes above: lease and submit (app/labeling/fastpath.py)
    for router in (users_pages, projects_pages, prompts_pages, labeling_pages, review_pages, jobs_pages, models_pages):
        app.include_router(router)
    app.mount("/static", StaticFiles(directory=str(ROOT / "static")), name="static")

    @app.get("/healthz", tags=["health"], summary="Answers 200 when the database does")
    def healthz(session: SessionDep, request: Request) -> JSONResponse:
        try:
            session.execute(text("SELECT 1"))
        except Exception as exc:  # noqa: BLE001  (any database failure means unhealthy)
            return JSONResponse({"status": "unavailable", "database": type(exc).__name__}, status_code=503)
        return JSONResponse({"status": "ok", "database": request.app.state.engine.dialect.name})

    return app
