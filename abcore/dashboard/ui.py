"""Streamlit plumbing shared by the pages: the cached engine, sessions, the signed-in user and error display.

No logic lives here beyond wiring: queries, validation and statistics are in ``abcore``.
"""

from __future__ import annotations

import importlib
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import streamlit as st
from sqlalchemy.engine import Engine
from sqlmodel import Session

from abcore.config import database_url, redact_url
from abcore.dashboard.views import html
from abcore.store.db import init_db, make_engine


@st.cache_resource(show_spinner=False)
def _engine_for(url: str) -> Engine:
    """One engine per database URL for the server's lifetime; migrated once when first built."""
    engine = make_engine(url)
    init_db(engine)
    return engine


def engine() -> Engine:
    """The engine of the database in force (``ABCORE_DATABASE_URL``, else the default SQLite file)."""
    return _engine_for(database_url())


def database_label() -> str:
    """The database URL in force, password hidden."""
    return redact_url(database_url())


@contextmanager
def session() -> Iterator[Session]:
    """A short-lived session on the cached engine (abcore functions commit themselves)."""
    with Session(engine(), expire_on_commit=False) as s:
        yield s


PRELOADED_MODULES = ("abcore.analysis.pipeline", "abcore.io.csv_export", "abcore.dashboard.views.charts")


@st.cache_resource(show_spinner=False)
def preload_analysis_code() -> threading.Thread:
    """Import the analysis stack (scipy, statsmodels: ~0.4 s) on a daemon thread, once per server.

    Called by the router on the first page view, so the first results page after a server start does
    not pay the imports too; only code is loaded here, no result is computed or cached.
    """
    thread = threading.Thread(target=lambda: [importlib.import_module(m) for m in PRELOADED_MODULES],
                              name="abcore-preload", daemon=True)
    thread.start()
    return thread


# --------------------------------------------------------------------------- who is using the app


def _load_users() -> tuple[dict[str, Any], str | None]:
    """Configured users (``.streamlit/secrets.toml`` and ``$ABCORE_USERS``) and a config error, if any."""
    from abcore.access.users import AuthConfigError, load_users

    try:
        return load_users(), None
    except AuthConfigError as exc:
        return {}, str(exc)


def current_user() -> Any | None:
    """The signed-in :class:`abcore.access.users.User`, or ``None``."""
    return st.session_state.get("auth_user")


def auth_enabled() -> bool:
    """True when users are configured (or their configuration is broken): sign-in required, viewers read only."""
    return bool(st.session_state.get("auth_enabled", False))


def can_edit() -> bool:
    """Whether the current visitor may change data: everyone in open mode, else signed-in editors only."""
    from abcore.access.users import can_edit as _can_edit

    if not auth_enabled():
        return True
    if st.session_state.get("auth_error"):
        return False
    return _can_edit(current_user(), st.session_state.get("auth_users", {}))


def actor() -> str:
    """The name written to the audit log for the current visitor."""
    user = current_user()
    return user.name if user is not None else "dashboard"


def read_only_notice() -> None:
    """Tell a viewer why the edit controls are missing."""
    if not can_edit():
        st.info("You are signed in as a **viewer**: you can look at everything but not change it.", icon="🔒")


@st.cache_resource(show_spinner=False)
def _login_throttle() -> Any:
    """One :class:`abcore.access.users.LoginThrottle` per server process (failed sign-ins per user and client)."""
    from abcore.access.users import LoginThrottle

    return LoginThrottle()


def _client_key() -> str:
    """The visitor's address for per-client throttling (Streamlit's view of it; 'unknown' when hidden)."""
    try:
        return str(st.context.ip_address or "unknown")
    except Exception:  # noqa: BLE001 - older Streamlit / no request context: one shared key
        return "unknown"


def _sign_in(users: dict[str, Any]) -> None:
    from abcore.access.users import sign_in

    result = sign_in(
        users, st.session_state.get("login_username", ""), st.session_state.get("login_password", ""),
        client=_client_key(), throttle=_login_throttle(),
    )
    if result.user is None:
        st.session_state["login_failed"] = result.message or True
    else:
        st.session_state["auth_user"] = result.user
        st.session_state["login_failed"] = False
        _remember_session(result.user)


def _sign_out() -> None:
    st.session_state.pop("auth_user", None)
    st.session_state["_abcore_cookie"] = ("", 0)  # expire the session cookie on the next run
    st.session_state["_abcore_no_restore"] = True  # this connection still carries the old cookie


# --------------------------------------------------------------------------- sign-in across reloads


def _secrets_mapping() -> dict[str, Any]:
    try:
        return dict(st.secrets)
    except Exception:  # noqa: BLE001 - no secrets file is fine
        return {}


def _remember_session(user: Any) -> None:
    """Queue a signed, expiring session cookie for ``user`` (abcore.access.sessions); written by :func:`_write_cookie`."""
    from abcore.access.sessions import DEFAULT_TTL_SECONDS, issue_session_token, session_secret

    token = issue_session_token(user.name, user.password_hash, secret=session_secret(_secrets_mapping()))
    st.session_state["_abcore_cookie"] = (token, DEFAULT_TTL_SECONDS)


def _write_cookie() -> None:
    """Set or expire the session cookie from the browser (a same-origin component iframe; Streamlit has no cookie API)."""
    pending = st.session_state.pop("_abcore_cookie", None)
    if pending is None:
        return
    import streamlit.components.v1 as components

    from abcore.access.sessions import COOKIE_NAME

    token, max_age = pending
    components.html(
        f"<script>window.parent.document.cookie = '{COOKIE_NAME}={token}; path=/; max-age={int(max_age)}; "
        "SameSite=Strict';</script>", height=0,
    )


def _restore_session(users: dict[str, Any]) -> Any | None:
    """The user a valid session cookie names (after a reload or a link opened in the same tab), else None."""
    from abcore.access.sessions import COOKIE_NAME, session_secret, verify_session_token

    try:
        token = st.context.cookies.get(COOKIE_NAME)
    except Exception:  # noqa: BLE001 - no browser context (AppTest)
        return None
    return verify_session_token(token, users, secret=session_secret(_secrets_mapping()))


def auth_gate() -> bool:
    """Sidebar sign-in state; returns True when the page may be shown.

    With no users configured the app runs open (and says so). Otherwise a visitor signs in
    first; viewers then see every page without edit controls.
    """
    users, error = _load_users()
    st.session_state["auth_users"] = users
    st.session_state["auth_error"] = error
    st.session_state["auth_enabled"] = bool(users) or error is not None
    from abcore.access.users import access_mode

    if access_mode(users, error) == "locked":  # fail closed: nobody reads anything
        st.session_state.pop("auth_user", None)
        st.title("🔒 Dashboard locked")
        st.error("The user configuration is invalid, so the dashboard is locked until it is fixed: "
                 + html.plain_text(error),
                 icon="🔒")
        return False
    if not auth_enabled():
        st.sidebar.caption("🔓 **Open mode** – no users are configured, so everyone can edit. "
                           "Add users in `.streamlit/secrets.toml` to require a sign-in.")
        return True
    user = current_user()
    if user is not None and user.name not in users:  # removed from the configuration meanwhile
        _sign_out()
        user = None
    if user is None and "_abcore_cookie" not in st.session_state and not st.session_state.get("_abcore_no_restore"):
        user = _restore_session(users)
        if user is not None:
            st.session_state["auth_user"] = user
    _write_cookie()
    if user is not None:
        st.sidebar.markdown(f"👤 **{html.plain_text(user.name)}** · {html.plain_text(user.role)}")
        st.sidebar.button("Sign out", key="sign_out", on_click=_sign_out)
        return True
    st.title("🔐 Sign in")
    st.caption("This abcore dashboard requires a sign-in.")
    with st.form("login_form"):
        st.text_input("User name", key="login_username")
        st.text_input("Password", type="password", key="login_password")
        submitted = st.form_submit_button("Sign in", type="primary")
    if submitted:
        _sign_in(users)
        if current_user() is not None:
            st.rerun()
    failed = st.session_state.get("login_failed")
    if failed:
        st.error(html.plain_text(failed) if isinstance(failed, str) else "Unknown user name or wrong password.")
    return False


_MENU: dict[str, Any] = {}


def set_menu(pages: dict[str, Any]) -> None:
    """Called by app.py with its ``{file name: st.Page}``: the pages the sidebar menu links to.

    Pages built with ``visibility="hidden"`` in their ``st.Page`` call are not listed (e.g. a page only
    reached by a link); :func:`page_registered` still knows them.
    """
    _MENU.clear()
    _MENU.update(pages)


def page_registered(file_name: str) -> bool:
    """Whether the router has a page for ``file_name`` (e.g. ``"edit.py"``), so a link to it works."""
    return file_name in _MENU


def sidebar_menu() -> None:
    """The router's pages as sidebar links, drawn first in the sidebar.

    Streamlit's own menu is switched off (``client.showSidebarNavigation = false``): until a
    session has run app.py it would list the files under ``pages/`` by name.
    """
    with st.sidebar.container(key="abcore_menu"):
        for page in _MENU.values():
            if getattr(page, "visibility", "visible") == "hidden":
                continue
            st.page_link(page)


ROUTED_KEY = "_abcore_routed"
ROUTE_TO_KEY = "_abcore_route_to"


def route_pending_page(pages: dict[str, Any]) -> None:
    """Called by app.py after ``st.navigation``: mark the session as routed and finish a detour.

    Until some session has run app.py, Streamlit serves a page URL by running the file under
    ``pages/`` directly, with its file-name navigation. :func:`start_page` then stores the
    wanted page and query and switches to app.py; this sends the user on to that page.
    """
    st.session_state[ROUTED_KEY] = True
    target = st.session_state.pop(ROUTE_TO_KEY, None)
    if target is not None and target[0] in pages:
        st.switch_page(pages[target[0]], query_params=target[1])


def _route_through_app(page_file: str) -> None:
    if not st.session_state.get(ROUTED_KEY):
        st.session_state[ROUTE_TO_KEY] = (page_file, dict(st.query_params))
        st.switch_page("app.py")


def start_page() -> bool:
    """The common top of every page: sign-in gate, shared sidebar, queued toasts.

    Returns True when the page body may be shown (open mode, or a signed-in user).
    """
    # the caller's file name from its frame: inspect.stack() would read every frame's source (~20 ms a run)
    _route_through_app(Path(sys._getframe(1).f_code.co_filename).name)
    st.set_page_config(page_title="abcore experiments", page_icon="🧪", layout="wide")
    sidebar_menu()
    allowed = auth_gate()
    with st.sidebar:
        st.toggle(
            "Live refresh",
            value=True,
            key="live_refresh",
            help="Results of running experiments refresh by themselves every few seconds.",
        )
        st.caption(f"Database: `{database_label()}`")
    if allowed:
        show_flashes()
    return allowed


# --------------------------------------------------------------------------- errors


def show_error(exc: BaseException) -> None:
    """A readable message for an exception (abcore's messages are written for users)."""
    from abcore.experiments.errors import ExperimentError

    if isinstance(exc, ExperimentError):
        st.error(html.plain_text(exc), icon="⚠️")
        problems = [p for p in getattr(exc, "problems", []) if p and p != str(exc)]
        for problem in problems:
            st.markdown(f"- {html.plain_text(problem)}")
    else:
        st.error(f"Something went wrong: {html.plain_text(exc)}", icon="🚨")
        with st.expander("Details for the developers"):
            st.code("".join(traceback.format_exception(exc)), language="text")


def guarded(body: Callable[[], Any]) -> None:
    """Run a page body; any error becomes a readable message plus an expander with the details.

    Streamlit's own control flow (``st.rerun``, ``st.stop``, ``st.switch_page``) derives from
    ``BaseException`` and passes through untouched.
    """
    try:
        body()
    except Exception as exc:  # noqa: BLE001 - the page must never show a raw traceback
        show_error(exc)


def flash(message: str, icon: str = "✅") -> None:
    """Queue a toast for the next run (survives ``st.rerun``); ``message`` is shown as plain text (it names
    experiments, metrics and models as their users typed them)."""
    st.session_state.setdefault("_flash", []).append((message, icon))


def show_flashes() -> None:
    """Show and clear the queued toasts."""
    for message, icon in st.session_state.pop("_flash", []):
        st.toast(html.plain_text(message), icon=icon)
