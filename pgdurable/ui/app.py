"""The dashboard's Flask application: four pages and four actions.

Pages: workflows (``/``), a workflow's runs (``/workflows/<source/name>``), an
instance (``/instances/<id>``) and the migration reports (``/report``). Actions
(POST only, CSRF-checked): cancel an instance, send it a signal, re-run a
run of the run history, retire a workflow. Each request opens one connection
as the session's role and closes it; what the database refuses is shown on
the page, never as a traceback.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from flask import Flask, abort, g, make_response, redirect, render_template, request, url_for
from markupsafe import Markup

from pgdurable import db
from pgdurable.errors import DatabaseUnavailable, PgDurableError
from pgdurable.ui import data, security, svg

log = logging.getLogger("pgdurable.ui")
REFRESH_SECONDS = 2


@dataclass(frozen=True)
class Settings:
    """How the dashboard was started (see ``pgdurable ui --help``)."""

    conninfo: str  # the resolved target; with login, user and password are replaced
    login: bool = False  # ask for database credentials
    # Sign in only when PostgreSQL checked the password (not under trust auth).
    require_password: bool = False
    secure_cookie: bool = False  # served over TLS
    loopback_only: bool = False  # answer only requests whose Host names loopback
    reports: tuple[Path, ...] = field(default_factory=tuple)


def create_app(settings: Settings) -> Flask:
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = 1 << 20
    sessions = security.Sessions()

    @app.before_request
    def _guard():
        if settings.loopback_only and not security.loopback_host(request.host):
            abort(400, "unexpected Host header (the dashboard answers on its own address only)")
        if request.endpoint == "static":
            return None
        g.token = request.cookies.get(security.COOKIE)
        g.session = sessions.get(g.token)
        g.new_token = None
        if g.session is None:
            fresh = security.Session(conninfo=None if settings.login else settings.conninfo)
            g.token, g.session = sessions.new(fresh)
            g.new_token = g.token
        if request.method == "POST":
            if not security.same_origin(
                request.headers.get("Origin"), request.headers.get("Referer"), request.host_url
            ):
                abort(403, "cross-origin request refused")
            if not security.token_matches(g.session, request.form.get("csrf")):
                abort(403, "missing or wrong CSRF token: reload the page and try again")
        if g.session.conninfo is None and request.endpoint not in ("login", "login_post"):
            return redirect(url_for("login", next=request.full_path.rstrip("?")))
        return None

    @app.after_request
    def _cookie(response):
        if getattr(g, "new_token", None):
            response.set_cookie(
                security.COOKIE,
                g.new_token,
                httponly=True,
                samesite="Strict",
                secure=settings.secure_cookie,
            )
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
        )
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response

    @app.teardown_request
    def _close(_exc):
        conn = g.pop("conn", None)
        if conn is not None:
            conn.close()

    def conn() -> db.Connection:
        if "conn" not in g:
            g.conn = db.connect(g.session.conninfo, autocommit=True)
        return g.conn

    def page(template: str, **values: Any):
        notices, g.session.notices = g.session.notices, []
        values.setdefault("refresh", None)
        return render_template(
            template,
            csrf=g.session.csrf,
            user=data.whoami(conn()) if g.session.conninfo else None,
            login=settings.login,
            notices=notices,
            **values,
        )

    def back(target: str, kind: str, text: str):
        g.session.notices.append((kind, text))
        return redirect(target, code=303)

    # -- sign-in ---------------------------------------------------------------------

    @app.get("/login")
    def login():
        if not settings.login:
            abort(404, "no sign-in here: the dashboard uses the role it was started with")
        notices, g.session.notices = g.session.notices, []
        return render_template(
            "login.html",
            csrf=g.session.csrf,
            user=None,
            login=True,
            notices=notices,
            next=_local(request.args.get("next")),
            refresh=None,
        )

    @app.post("/login")
    def login_post():
        if not settings.login:
            abort(404, "no sign-in here: the dashboard uses the role it was started with")
        user = request.form.get("user", "").strip()
        password = request.form.get("password", "")
        target = _local(request.form.get("next"))
        if not user:
            return back(url_for("login", next=target), "error", "give a database role to sign in")
        conninfo = db.conninfo_with(settings.conninfo, user=user, password=password or None)
        try:
            with db.connection(conninfo) as probe:
                checked = db.used_password(probe)
        except DatabaseUnavailable as exc:
            log.info("sign-in as %s refused: %s", user, exc.message)
            return back(url_for("login", next=target), "error", f"could not sign in as {user}")
        if settings.require_password and not checked:
            # Under trust authentication any password would do: on an exposed
            # address that would let anyone in as any role.
            return back(
                url_for("login", next=target),
                "error",
                "the database did not check the password (trust authentication): "
                "configure password authentication for the dashboard's connections",
            )
        # A new session (and cookie) on sign-in: a token planted before it is worthless.
        sessions.drop(g.token)
        g.token, g.session = sessions.new(security.Session(conninfo=conninfo, user=user))
        g.new_token = g.token
        return redirect(target, code=303)

    @app.post("/logout")
    def logout():
        sessions.drop(g.token)
        g.new_token = None
        response = redirect(url_for("login") if settings.login else url_for("workflows"), 303)
        response.delete_cookie(security.COOKIE)
        return response

    # -- pages ----------------------------------------------------------------------------

    @app.get("/")
    def workflows():
        query, fidelity = request.args.get("q", ""), request.args.get("fidelity", "")
        listing = data.workflows(conn(), query, fidelity if fidelity in data.FIDELITIES else "")
        return page(
            "workflows.html",
            listing=listing,
            q=query,
            fidelity=fidelity,
            fidelities=data.FIDELITIES,
        )

    @app.get("/workflows/<path:workflow>")
    def runs(workflow: str):
        grid = data.run_grid(conn(), workflow)
        running = any(r.status not in data.TERMINAL for r in grid.runs[:1])
        return page("runs.html", grid=grid, refresh=REFRESH_SECONDS if running else None)

    @app.get("/instances/<instance_id>")
    def instance(instance_id: str):
        view = data.instance(conn(), instance_id)
        if view is None:
            abort(404, f"instance {instance_id} not found, or not yours to see")
        picture = Markup(svg.render(view.graph))  # every text in it is escaped by svg.render
        return page(
            "instance.html",
            view=view,
            picture=picture,
            refresh=REFRESH_SECONDS if view.running else None,
        )

    @app.get("/report")
    def report():
        return page("report.html", reports=data.read_reports(list(settings.reports)))

    @app.get("/report/file")
    def report_file():
        # Only a generated .sql file an import report names: never an arbitrary path.
        wanted = request.args.get("path", "")
        known = {
            str(i.output): i.output
            for r in data.read_reports(list(settings.reports))
            for i in r.items
            if i.output is not None
        }
        path = known.get(wanted)
        if path is None or path.suffix != ".sql" or not path.is_file():
            abort(404, "not a generated file of the reports this dashboard shows")
        response = make_response(path.read_text(encoding="utf-8"))
        response.headers["Content-Type"] = "text/plain; charset=utf-8"
        return response

    # -- actions -----------------------------------------------------------------------------

    @app.post("/instances/<instance_id>/cancel")
    def cancel(instance_id: str):
        target = url_for("instance", instance_id=instance_id)
        answer = data.cancel(conn(), instance_id)
        return back(target, "ok", f"cancel: {answer}")

    @app.post("/instances/<instance_id>/signal")
    def send_signal(instance_id: str):
        target = url_for("instance", instance_id=instance_id)
        name = request.form.get("name", "").strip()
        if not name:
            return back(target, "error", "give the signal's name")
        answer = data.signal(conn(), instance_id, name, request.form.get("data", ""))
        return back(target, "ok", f"signal {name}: {answer}")

    @app.post("/workflows/<path:workflow>/retire")
    def retire(workflow: str):
        answer = data.retire(conn(), workflow)
        if not answer.get("registered"):
            return back(url_for("workflows"), "ok", f"{workflow} was not registered")
        dropped = answer.get("dropped") or []
        text = f"retired {workflow}" + (f" (dropped {', '.join(dropped)})" if dropped else "")
        return back(url_for("workflows"), "ok", text)

    @app.post("/runs/<int:runid>/rerun")
    def rerun(runid: int):
        started = data.rerun(conn(), runid)
        target = url_for("instance", instance_id=started)
        return back(target, "ok", f"re-run of run {runid}: started {started}")

    # -- errors: a message on the page, never a traceback -------------------------------------

    @app.errorhandler(data.ActionError)
    def _refused(exc: data.ActionError):
        came_from = urlsplit(request.referrer or "")
        target = came_from.path + (f"?{came_from.query}" if came_from.query else "")
        return back(_local(target), "error", exc.message)

    @app.errorhandler(PgDurableError)
    def _failed(exc: PgDurableError):
        status = 503 if isinstance(exc, DatabaseUnavailable) else 400
        return _error_page(status, exc.message)

    @app.errorhandler(db.DatabaseError)
    def _database(exc: Exception):
        return _error_page(400, db.error_text(exc))

    @app.errorhandler(400)
    @app.errorhandler(403)
    @app.errorhandler(404)
    @app.errorhandler(405)
    def _http(exc):
        return _error_page(exc.code, exc.description)

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("dashboard request failed")
        return _error_page(500, "internal error (the dashboard's log has the details)")

    def _error_page(status: int, message: str):
        html = render_template(
            "error.html",
            status=status,
            message=message,
            user=None,
            login=settings.login,
            notices=[],
            csrf=getattr(g, "session", None) and g.session.csrf,
            refresh=None,
        )
        return html, status

    return app


def _local(target: str | None) -> str:
    """A redirect target on this site only (no scheme, no host)."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/"
    return target
