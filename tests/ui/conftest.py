"""The end-to-end harness of the dashboard: one real test database with real
instances (run by a real worker), one ``pgdurable ui`` process and one headless
Chromium per module (Debian's ``chromium`` + ``chromium-driver``, driven with
selenium). A failed test leaves a screenshot of every page it visited in its
``tmp_path``."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from pgdurable import db
from pgdurable.testing import TestDatabase, stop_process, wait_for
from pgdurable.worker import Worker, WorkerOptions
from pgdurable.worker.code_roots import CodeConfig

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
REPO = Path(__file__).resolve().parents[2]


class Browser:
    """A headless Chromium that remembers a screenshot of each page it loads."""

    def __init__(self, base_url: str) -> None:
        for binary in (CHROMIUM, CHROMEDRIVER):
            if not Path(binary).exists():
                pytest.fail(f"{binary} is missing: apt-get install chromium chromium-driver")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1400,1000",
        ):
            options.add_argument(argument)
        self.driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
        self.base_url = base_url.rstrip("/")
        self.shots: list[tuple[str, bytes]] = []

    def open(self, path: str) -> None:
        self.driver.get(self.base_url + path)
        self.remember()

    def remember(self) -> None:
        self.shots.append((self.driver.current_url, self.driver.get_screenshot_as_png()))

    def click(self, css: str) -> None:
        self.driver.find_element(By.CSS_SELECTOR, css).click()
        self.remember()

    def text(self, css: str = "body") -> str:
        return self.driver.find_element(By.CSS_SELECTOR, css).text

    def all(self, css: str) -> list:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def sign_in(self, role: str, password: str = "any") -> None:
        self.driver.delete_all_cookies()
        self.open("/login")
        self.driver.find_element(By.ID, "user").send_keys(role)
        self.driver.find_element(By.ID, "password").send_keys(password)
        self.click("#sign-in")
        wait_for(lambda: self.all("#role"), timeout=10, what=f"signed in as {role}")
        assert self.text("#role") == role

    def save(self, folder: Path) -> None:
        for i, (url, png) in enumerate(self.shots):
            name = url.split("//", 1)[-1].split("/", 1)[-1].replace("/", "_").replace("?", "_")
            (folder / f"{i:02d}-{name or 'index'}.png"[:120]).write_bytes(png)

    def quit(self) -> None:
        self.driver.quit()


class ThreadWorker:
    """A real worker on its own thread for the whole module (live statuses),
    running code steps from ``code_root``."""

    def __init__(self, conninfo: str, code_root: Path) -> None:
        self.loop = asyncio.new_event_loop()
        code = CodeConfig.build([str(code_root)])
        self.worker = Worker(conninfo, WorkerOptions(poll_interval=0.1, code=code))
        self.thread = threading.Thread(
            target=lambda: self.loop.run_until_complete(self.worker.run()), daemon=True
        )
        self.thread.start()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.worker.stop)
        self.thread.join(30)
        self.loop.close()


@pytest.fixture(scope="module")
def ui_database(pg_cluster, template_database) -> Iterator[TestDatabase]:
    name = f"test_ui_{uuid.uuid4().hex[:10]}"
    db.create_database_if_missing(pg_cluster.conninfo("postgres"), name, template_database)
    database = TestDatabase(pg_cluster, name)
    yield database
    with db.connection(pg_cluster.conninfo("postgres"), autocommit=True) as conn:
        conn.execute(db.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(db.sql.Identifier(name)))


def _start(database: TestDatabase, user: str, graph: dict, label: str) -> str:
    return database.value("SELECT df.start(%s, %s)", [json.dumps(graph), label], user=user)


@pytest.fixture(scope="module")
def instances(ui_database, tmp_path_factory) -> Iterator[dict[str, str]]:
    """alice: a completed and a failed run of demo/nightly and two instances waiting
    for a signal (demo/waiter, demo/approval); bob: a run of bobs/secret; dave: a
    command step (bin/report.sh under the worker's code root, granted to him)
    that prints on stdout and stderr and exits 3. A worker runs them."""
    for role in ("alice", "bob", "dave"):
        ui_database.create_role(role)
        ui_database.execute("SELECT df.grant_usage(%s)", [role])
    code_root = tmp_path_factory.mktemp("code")
    (code_root / "bin").mkdir()
    script = code_root / "bin" / "report.sh"
    script.write_text("#!/bin/sh\necho 'rows exported: 42'\necho 'disk almost full' >&2\nexit 3\n")
    script.chmod(0o755)
    ui_database.execute("SELECT pgdurable.grant_code('dave', 'command:bin/*')")

    def sql(query: str) -> dict:
        return {"node_type": "SQL", "query": query}

    def then(a: dict, b: dict) -> dict:
        return {"node_type": "THEN", "left_node": a, "right_node": b}

    wait = {"node_type": "SIGNAL", "query": json.dumps({"signal_name": "go"})}
    ids = {
        "ok": _start(
            ui_database, "alice", then(sql("SELECT 1 AS a"), sql("SELECT 2")), "demo/nightly"
        ),
        "bad": _start(
            ui_database,
            "alice",
            then(sql("SELECT 1 AS a"), sql("SELECT 1/0")),
            "quickstart:demo/nightly",
        ),
        "waiter": _start(
            ui_database, "alice", then(wait, sql("SELECT 'signalled'")), "demo/waiter"
        ),
        "approval": _start(
            ui_database, "alice", then(wait, sql("SELECT 'signalled'")), "demo/approval"
        ),
        "secret": _start(ui_database, "bob", sql("SELECT 4"), "bobs/secret"),
        "report": _start(
            ui_database,
            "dave",
            {"node_type": "COMMAND", "query": json.dumps({"argv": ["bin/report.sh"]})},
            "ops/report",
        ),
    }
    worker = ThreadWorker(ui_database.conninfo(), code_root)

    def settled() -> bool:
        rows = dict(ui_database.execute("SELECT id, status FROM df.instances"))
        waiting = ui_database.value(
            "SELECT count(*) = 2 FROM pgdurable.runs"
            " WHERE instance_id = ANY(%s) AND 'go' = ANY(waiting_signals)",
            [[ids["waiter"], ids["approval"]]],
        )
        return (
            all(rows[ids[k]] in ("completed", "failed") for k in ("ok", "bad", "secret", "report"))
            and waiting
        )

    wait_for(settled, timeout=30, what="the module's instances to settle")
    yield ids
    worker.stop()


@pytest.fixture(scope="module")
def ticker(ui_database, instances, tmp_path_factory) -> Iterator[str]:
    """A real pg_cron job translated and applied with ``pgdurable apply``, run by
    the module's worker every second as role ticker: SELECT public.tick(), which
    fails while public.control.fail is true (it is at first). Retired after."""
    from pgdurable import apply as applying
    from pgdurable import pipeline
    from pgdurable.diagnostics import SourceRef
    from pgdurable.translators import pg_cron
    from pgdurable.translators.base import TranslateContext

    ui_database.create_role("ticker")
    ui_database.execute("SELECT df.grant_usage('ticker')")
    ui_database.execute(
        "CREATE TABLE public.control (fail boolean NOT NULL); INSERT INTO public.control"
        " VALUES (true); CREATE FUNCTION public.tick() RETURNS void LANGUAGE plpgsql AS $$"
        " BEGIN IF (SELECT fail FROM public.control) THEN"
        " RAISE EXCEPTION 'no rows for today yet'; END IF; END $$;"
        " GRANT SELECT ON public.control TO ticker"
    )
    job = pg_cron.CronJob(
        "1 seconds", "SELECT public.tick()", SourceRef("cron.job", 1), jobid=7,
        jobname="load-today", username="ticker", active=True,
    )  # fmt: skip
    ctx = TranslateContext(portable=False, default_database=ui_database.name, timezone="GMT")
    out = tmp_path_factory.mktemp("ticker")
    pipeline.run_import("pg_cron", pg_cron.translate([job], ctx), out)
    with ui_database.connect() as conn:
        applying.apply_directory(out, applying.DatabaseSink(conn))
    yield "pg_cron/load-today"
    ui_database.execute("SELECT pgdurable.retire('pg_cron', 'load-today')")


@pytest.fixture(scope="module")
def import_reports(ui_database, tmp_path_factory) -> Path:
    """A folder of real import reports (``import-pgcron --report``): the bundled
    pg_cron example, with its ``verify --all --json`` answer, and a script with
    an untranslatable statement."""
    folder = tmp_path_factory.mktemp("import")
    example = REPO / "fixtures/examples/pg_cron"
    ui_database.create_role("shop_app")

    def pgdurable(*args: str, stdout=None) -> int:
        command = [sys.executable, "-m", "pgdurable", *args]
        return subprocess.run(
            command, cwd=folder, stdout=stdout, stderr=subprocess.DEVNULL
        ).returncode

    pgdurable(
        "import-pgcron",
        "--from-file",
        str(example / "jobs.sql"),
        "--out",
        "shop",
        "--default-username",
        "shop_app",
        "--default-database",
        "example_shop",
        "--report",
        "shop.json",
    )
    with (folder / "verify.json").open("w") as answer:
        verified = pgdurable(
            "verify",
            "--all",
            "shop",
            "--fixture",
            str(example / "fixture"),
            "--dsn",
            ui_database.conninfo(),
            "--json",
            stdout=answer,
        )
    assert verified == 0, "the bundled example no longer verifies equal"
    # exits 1: one statement of the script fails to translate, on purpose
    pgdurable(
        "import-pgcron",
        "--from-file",
        str(REPO / "fixtures/pg_cron/schedule_script.sql"),
        "--out",
        "script",
        "--report",
        "script.json",
    )
    return folder


@pytest.fixture(scope="module")
def dashboard(ui_database, instances, import_reports, tmp_path_factory) -> Iterator[str]:
    """``pgdurable ui --login`` on loopback, as a separate process; its URL."""
    log = tmp_path_factory.mktemp("dashboard") / "ui.log"
    command = [sys.executable, "-m", "pgdurable", "ui", "--json", "--login"]
    command += ["--dsn", ui_database.conninfo(), "--address", "127.0.0.1:0"]
    command += ["--report", str(import_reports)]
    with log.open("w") as errors:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=errors, text=True)
    try:
        lines = []  # the --json answer, printed once the server listens
        while not lines or lines[-1] not in ("}\n", ""):
            lines.append(process.stdout.readline())
        assert lines[-1], f"the dashboard did not start: {log.read_text()}"
        yield json.loads("".join(lines))["url"]
    finally:
        stop_process(process)
        process.stdout.close()


@pytest.fixture(scope="module")
def browser(dashboard) -> Iterator[Browser]:
    chrome = Browser(dashboard)
    yield chrome
    chrome.quit()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.ui_failed = report.failed


@pytest.fixture(autouse=True)
def screenshots_on_failure(request, tmp_path):
    """Every page a failed test saw, as PNGs in its tmp_path."""
    chrome = request.getfixturevalue("browser") if "browser" in request.fixturenames else None
    if chrome is not None:
        chrome.shots.clear()
    yield
    if chrome is not None and getattr(request.node, "ui_failed", False):
        chrome.save(tmp_path)
