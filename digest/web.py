"""The web page (Starlette): subscribe with double opt-in, confirm, preferences, unsubscribe, and the edition
archive under /archive/. It holds no business logic: subscribers change through `digest.store.subscribers`,
links are checked by `digest.deliver.links`, mail goes out through the configured transport.

Safety: every form carries a CSRF token matched against a cookie (double submit); the only route exempt is
the RFC 8058 one-click POST, whose signed token is its own proof. Sign-ups answer the same page whether the
address is new, pending or already subscribed, and the confirmation email is sent after the response so the
timing does not tell either. Sign-up attempts are limited per IP and per address in memory (per process,
reset on restart). No route redirects anywhere, so there is nothing to open-redirect.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from collections import defaultdict, deque

from sqlalchemy import Engine
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from digest.config import Config
from digest.deliver.links import CONFIRM, PREFERENCES, UNSUBSCRIBE, Links
from digest.deliver.message import confirmation_message
from digest.deliver.transports import SendFailure, get_transport
from digest.errors import DigestError, SubscriberError
from digest.render.archive import archive_folder
from digest.render.templating import render_template, template_environment
from digest.store import open_database, session_scope
from digest.store import subscribers as store

CSRF_COOKIE = "digest_csrf"
log = logging.getLogger(__name__)


class RateLimit:
    """At most `limit` events per key in any sliding hour, counted in this process's memory."""

    MAX_KEYS = 100_000

    def __init__(self, limit: int, window_seconds: float = 3600.0) -> None:
        self.limit, self.window = limit, window_seconds
        self.events: dict[str, deque[float]] = defaultdict(deque)

    def allow(self, key: str) -> bool:
        now = time.monotonic()
        if len(self.events) >= self.MAX_KEYS:
            self.forget_before(now - self.window)
        events = self.events[key]
        while events and events[0] <= now - self.window:
            events.popleft()
        if len(events) >= self.limit:
            return False
        events.append(now)
        return True

    def forget_before(self, cutoff: float) -> None:
        """Drop keys with no event in the window, so memory stays bounded under a flood of new addresses."""
        for key in [key for key, events in self.events.items() if not events or events[-1] <= cutoff]:
            del self.events[key]


class Pages:
    """The request handlers, sharing the config, database, signed links and templates."""

    def __init__(self, config: Config, engine: Engine) -> None:
        self.config, self.engine = config, engine
        self.links = Links(config)
        self.themes = config.theme_names
        self.limits = RateLimit(config.web.subscribe_limit_per_hour)
        self.env = template_environment(config)

    def page(self, request: Request, name: str, status: int = 200, background=None, **context) -> HTMLResponse:
        """Render the page `templates/web/<name>.html.j2` with a CSRF token, setting the cookie when the browser
        has none yet."""
        token = request.cookies.get(CSRF_COOKIE) or secrets.token_urlsafe(24)
        html = render_template(self.env, f"web/{name}.html.j2", title=self.config.digest.title, csrf=token, **context)
        response = HTMLResponse(html, status_code=status, background=background)
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "no-referrer"
        if request.cookies.get(CSRF_COOKIE) != token:
            response.set_cookie(CSRF_COOKIE, token, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        return response

    def notice(self, request: Request, heading: str, text: str, status: int = 200, background=None) -> HTMLResponse:
        return self.page(request, "notice", status, background, heading=heading, text=text)

    async def checked_form(self, request: Request):
        """The POSTed form, or None when its CSRF token does not match the cookie."""
        form = await request.form()
        cookie, field = request.cookies.get(CSRF_COOKIE, ""), str(form.get("csrf", ""))
        return form if cookie and hmac.compare_digest(cookie, field) else None

    def forbidden(self, request: Request) -> HTMLResponse:
        return self.notice(request, "Form expired", "Please reload the page and try again.", 403)

    # --- Subscribe and confirm ---------------------------------------------------------------------------

    async def home(self, request: Request) -> HTMLResponse:
        return self.subscribe_form(request)

    def subscribe_form(self, request: Request, error: str = "", status: int = 200, email: str = "",
                       chosen: list[str] | None = None, frequency: str = "daily") -> HTMLResponse:
        return self.page(request, "subscribe", status, error=error, email=email, themes=self.themes,
                         chosen=chosen or [], frequency=frequency)

    async def subscribe(self, request: Request) -> HTMLResponse:
        form = await self.checked_form(request)
        if form is None:
            return self.forbidden(request)
        email, frequency = str(form.get("email", "")), str(form.get("frequency", "daily"))
        chosen = [str(theme) for theme in form.getlist("themes")]
        try:
            address = store.normalise_email(email)
            themes = store.check_choices(chosen, frequency, self.themes)
        except SubscriberError as exc:
            return self.subscribe_form(request, str(exc), 400, email, chosen, frequency)
        client = request.client.host if request.client else "unknown"
        if not (self.limits.allow(f"ip:{client}") and self.limits.allow(f"email:{address}")):
            return self.notice(request, "Too many attempts", "Please try again in an hour.", 429)
        to_confirm = await run_in_threadpool(self.record_subscription, address, themes, frequency)
        task = BackgroundTask(self.send_confirmation, *to_confirm) if to_confirm else None
        return self.notice(request, "Check your inbox",
                           f"If {address} can receive {self.config.digest.title}, a confirmation link is on its "
                           "way. Nothing is sent until you open it.", background=task)

    def record_subscription(self, address: str, themes: list[str], frequency: str) -> tuple[int, str] | None:
        with session_scope(self.engine) as session:
            subscriber = store.request_subscription(session, address, themes, frequency)
            return (subscriber.id, subscriber.email) if subscriber else None

    def send_confirmation(self, subscriber_id: int, email: str) -> None:
        """Runs after the response: a mail failure is logged, never shown (it would reveal the address)."""
        message = confirmation_message(self.config, email, self.links.confirm_url(subscriber_id, email))
        try:
            with get_transport(self.config) as transport:
                transport.send(message)
        except (SendFailure, DigestError) as exc:
            log.error("confirmation email to %s not sent: %s", email, exc)

    async def confirm(self, request: Request) -> HTMLResponse:
        found = self.links.read(CONFIRM, request.query_params.get("token", ""))
        if found is None or not await run_in_threadpool(self.change, found, store.confirm_subscriber):
            return self.notice(request, "Link expired or invalid", "Please subscribe again.", 400)
        return self.notice(request, "Subscription confirmed",
                           "You will receive the next edition. Every email has a link to change your preferences.")

    def change(self, found: tuple[int, str], action, *args) -> bool:
        """Apply `action` to the subscriber a token names; False if there is no such subscriber any more."""
        with session_scope(self.engine) as session:
            subscriber = store.subscriber_for_token(session, *found)
            if subscriber is None:
                return False
            action(subscriber, *args)
            return True

    # --- Preferences ---------------------------------------------------------------------------------------

    async def preferences(self, request: Request) -> HTMLResponse:
        token = request.query_params.get("token", "")
        found = self.links.read(PREFERENCES, token)
        current = found and await run_in_threadpool(self.current_choices, found)
        if not current:
            return self.notice(request, "Preferences",
                               "Use the preferences link at the bottom of any email to change what you receive.", 400)
        if request.method == "GET":
            return self.preferences_form(request, token, found, *current)
        return await self.save_preferences(request, token, found)

    def current_choices(self, found: tuple[int, str]) -> tuple[str, list[str], str] | None:
        with session_scope(self.engine) as session:
            subscriber = store.subscriber_for_token(session, *found)
            return (subscriber.email, subscriber.themes, subscriber.frequency) if subscriber else None

    def preferences_form(self, request: Request, token: str, found: tuple[int, str], email: str, chosen: list[str],
                         frequency: str, message: str = "", status: int = 200) -> HTMLResponse:
        unsubscribe_token = self.links.token(UNSUBSCRIBE, *found)
        return self.page(request, "preferences", status, token=token, email=email, themes=self.themes,
                         chosen=chosen, frequency=frequency, message=message, unsubscribe_token=unsubscribe_token)

    async def save_preferences(self, request: Request, token: str, found: tuple[int, str]) -> HTMLResponse:
        form = await self.checked_form(request)
        if form is None:
            return self.forbidden(request)
        chosen, frequency = [str(theme) for theme in form.getlist("themes")], str(form.get("frequency", ""))
        try:
            themes = store.check_choices(chosen, frequency, self.themes)
        except SubscriberError as exc:
            return self.preferences_form(request, token, found, found[1], chosen, frequency, str(exc), 400)
        await run_in_threadpool(self.change, found, store.set_preferences, themes, frequency)
        return self.preferences_form(request, token, found, found[1], themes, frequency, "Saved.")

    # --- Unsubscribe ---------------------------------------------------------------------------------------

    async def unsubscribe_page(self, request: Request) -> HTMLResponse:
        """A page with a button; opening it (or a link scanner fetching it) never unsubscribes by itself."""
        token = request.query_params.get("token", "")
        if self.links.read(UNSUBSCRIBE, token) is None:
            return self.notice(request, "Unsubscribe", "Use the unsubscribe link at the bottom of any email "
                                                       "you received: it works in one click.", 400)
        return self.page(request, "unsubscribe", token=token)

    async def one_click(self, request: Request) -> HTMLResponse:
        """RFC 8058: a POST unsubscribes at once, with no cookie or CSRF token; every answer is the same 200."""
        found = self.links.read(UNSUBSCRIBE, request.query_params.get("token", ""))
        if found is not None:
            await run_in_threadpool(self.change, found, store.unsubscribe)
        return self.notice(request, "Unsubscribed", f"This address will get no more emails from "
                                                    f"{self.config.digest.title}.")


def create_app(config: Config) -> Starlette:
    """The ASGI app; upgrades the database first. ConfigError if the signing secret is not set."""
    pages = Pages(config, open_database(config.database_url))
    routes = [
        Route("/", pages.home, methods=["GET"]),
        Route("/subscribe", pages.subscribe, methods=["POST"]),
        Route("/confirm", pages.confirm, methods=["GET"]),
        Route("/preferences", pages.preferences, methods=["GET", "POST"]),
        Route("/unsubscribe", pages.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/one-click", pages.unsubscribe_page, methods=["GET"]),
        Route("/unsubscribe/one-click", pages.one_click, methods=["POST"]),
        Mount("/archive", StaticFiles(directory=archive_folder(config), html=True, check_dir=False)),
    ]
    return Starlette(routes=routes)
