"""``pgdurable ui`` in a real browser: what a person sees and can do.

One dashboard process, one database (real instances, a real worker) and one
headless Chromium serve every test of the module (fixtures in conftest.py).
"""

from __future__ import annotations

import urllib.error
import urllib.request

from pgdurable.testing import wait_for


def test_a_failed_run_shows_its_error(browser, instances):
    browser.sign_in("alice")
    assert [r.get_attribute("data-workflow") for r in browser.all("#workflows tbody tr")] == [
        "demo/approval",
        "demo/nightly",
        "demo/waiter",
    ]
    browser.click('a[href="/workflows/demo/nightly"]')
    rows = browser.all("#grid tbody tr")
    assert [r.get_attribute("data-instance") for r in rows] == [instances["bad"], instances["ok"]]
    failed = browser.all(f'tr[data-instance="{instances["bad"]}"] a.cell.failed')
    assert len(failed) == 1 and "division by zero" in failed[0].get_attribute("title")
    assert len(browser.all(f'tr[data-instance="{instances["ok"]}"] a.cell.completed')) == 2
    failed[0].click()
    browser.remember()
    assert browser.text("#instance-status") == "failed"
    node = browser.driver.current_url.rsplit("#node-", 1)[1]
    assert "division by zero" in browser.text(f"#node-{node} pre.error")
    # the graph: one SVG box per step, coloured by status, linked to its row
    boxes = browser.all("svg.graph a.node")
    assert {b.get_attribute("data-status") for b in boxes} == {"completed", "failed"}
    assert node in [b.get_attribute("data-node") for b in boxes]


def test_the_cancel_button_cancels(browser, instances, ui_database):
    browser.sign_in("alice")
    browser.open(f"/instances/{instances['waiter']}")
    assert browser.text("#instance-status") == "running"
    # a running instance refreshes itself (while nobody types into its forms)
    assert browser.all("script#refresh")
    browser.click("#cancel")
    assert "cancel" in browser.text(".notice.ok")
    status = "SELECT status FROM df.instances WHERE id = %s"
    wait_for(lambda: ui_database.value(status, [instances["waiter"]]) == "cancelled", timeout=10)
    browser.open(f"/instances/{instances['waiter']}")
    assert browser.text("#instance-status") == "cancelled" and not browser.all("#cancel")


def test_a_signal_releases_a_waiting_instance_and_the_page_follows(browser, instances):
    browser.sign_in("alice")
    browser.open(f"/instances/{instances['approval']}")
    assert browser.driver.find_element("id", "signal-name").get_attribute("value") == "go"
    browser.driver.find_element("id", "signal-data").send_keys('{"ok": true}')
    browser.click("#send-signal")  # its notice may already be gone: the page reloads itself

    def shown_status() -> str | None:
        try:
            return browser.text("#instance-status")
        except Exception:  # the page is reloading itself
            return None

    # nobody reloads: the page refreshes itself until the instance has finished
    wait_for(lambda: shown_status() == "completed", timeout=20, what="the page to follow")
    browser.remember()
    assert '"signalled"' in browser.text("#nodes")


def test_another_roles_workflows_are_not_visible(browser, instances):
    browser.sign_in("bob")
    assert [r.get_attribute("data-workflow") for r in browser.all("#workflows tbody tr")] == [
        "bobs/secret"
    ]
    browser.open(f"/instances/{instances['bad']}")
    assert "not found, or not yours to see" in browser.text("#error")
    browser.open("/workflows/demo/nightly")
    assert "No run of demo/nightly" in browser.text("main")
    browser.sign_in("alice")
    assert "bobs/secret" not in browser.text("#workflows")


def test_the_migration_report_lists_items_diagnostics_and_files(browser):
    browser.sign_in("alice")
    browser.open("/report")
    verified = browser.all('tr[data-item="daily-revenue"]')[0]
    assert "exact" in verified.text and "equal" in verified.text  # pgdurable verify's answer
    item = browser.all('tr[data-item="warehouse-sync"]')[0]
    assert "equal" not in item.text  # not verified
    assert "exact" in item.text and "PGD205" in item.text
    failed = browser.all('tr[data-item="line_13"]')[0]
    assert "failed" in failed.text and "PGD102" in failed.text
    item.find_element("css selector", "a").click()
    browser.remember()
    assert "SELECT pgdurable.deploy_workflow(" in browser.text("body")


def test_posts_need_the_csrf_token_and_our_origin(dashboard, instances, ui_database):
    url = f"{dashboard.rstrip('/')}/instances/{instances['ok']}/cancel"

    def post(headers: dict[str, str], body: bytes = b"csrf=forged") -> int:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    assert post({"Origin": "http://evil.example"}) == 403
    assert post({}) == 403  # neither Origin nor Referer
    assert post({"Origin": dashboard.rstrip("/")}) == 403  # our origin, but no valid token
    assert post({"Host": "attacker.example", "Origin": "http://attacker.example"}) == 400
    status = "SELECT status FROM df.instances WHERE id = %s"
    assert ui_database.value(status, [instances["ok"]]) == "completed"


def test_retire_needs_the_registrys_privileges(browser, ui_database):
    ui_database.create_role("carol")
    ui_database.execute(
        "SELECT pgdurable.deploy_workflow('demo', 'registered', 'SELECT 1', NULL, 'portable',"
        " 'manual', 'carol', NULL, false)"
    )
    # alice may not: the page shows the database's refusal
    browser.sign_in("alice")
    browser.driver.execute_script(
        """const form = document.createElement('form');
        form.method = 'post'; form.action = '/workflows/demo/registered/retire';
        const csrf = document.querySelector('input[name=csrf]').cloneNode();
        form.appendChild(csrf); document.body.appendChild(form); form.submit();"""
    )
    wait_for(lambda: browser.all(".notice.error"), timeout=10, what="the refusal")
    browser.remember()
    assert "permission denied" in browser.text(".notice.error")
    assert "Traceback" not in browser.text("body")
    registered = "SELECT count(*) FROM pgdurable.workflows WHERE name = 'registered'"
    assert ui_database.value(registered) == 1
    # the administrator sees the registry, with its fidelity counts, and retires it
    browser.sign_in("postgres")
    assert browser.text("#count-manual") == "1"
    browser.click('tr[data-workflow="demo/registered"] button')
    assert "retired demo/registered" in browser.text(".notice.ok")
    assert ui_database.value(registered) == 0
    assert not browser.all('tr[data-workflow="demo/registered"]')


def test_a_command_steps_output_tails_and_exit_code_show(browser, instances):
    browser.sign_in("dave")
    browser.open(f"/instances/{instances['report']}")
    assert browser.text("#instance-status") == "failed"
    output = browser.all("#nodes .output")
    assert len(output) == 1
    assert browser.text("#nodes .output .exit-code") == "3"
    assert "rows exported: 42" in browser.text("#nodes .output pre.stdout")
    assert "disk almost full" in browser.text("#nodes .output pre.stderr")


def test_a_failed_tick_runs_again_after_the_data_is_fixed(browser, ticker, ui_database):
    failed = (
        "SELECT min(runid) FROM pgdurable.run_history WHERE workflow = %s AND outcome = 'failed'"
    )
    runid = wait_for(lambda: ui_database.value(failed, [ticker]), timeout=30, what="a failed tick")
    browser.sign_in("postgres")  # re-running a tick reads the registry: an administrator
    row = browser.all(f'tr[data-workflow="{ticker}"]')[0]
    assert row.get_attribute("data-state") == "failing" and "failing" in row.text
    browser.open(f"/workflows/{ticker}")
    # task ids as labels: the step is the job's name, not its SQL
    assert "job load-today" in [
        th.get_attribute("title") for th in browser.all("#grid thead th.step")
    ]
    run = browser.all(f'tr[data-run="{runid}"]')[0]
    assert "no rows for today yet" in run.find_element("css selector", "pre.error").get_attribute(
        "textContent"
    )
    ui_database.execute("UPDATE public.control SET fail = false")  # the data is fixed
    browser.click(f'tr[data-run="{runid}"] button.rerun')
    assert f"re-run of run {runid}: started" in browser.text(".notice.ok")
    started = browser.driver.current_url.rsplit("/", 1)[1]

    def shown_status() -> str | None:
        try:
            return browser.text("#instance-status")
        except Exception:  # the page is reloading itself
            return None

    wait_for(lambda: shown_status() == "completed", timeout=20, what="the re-run to complete")
    browser.remember()
    again = "SELECT kind || ' ' || outcome || ' ' || username FROM pgdurable.run_history WHERE instance_id = %s"
    assert ui_database.value(again, [started]) == "run succeeded ticker"
    browser.open(f"/workflows/{ticker}")
    rows = browser.all(f'#grid tbody tr[data-instance="{started}"]')
    assert len(rows) == 1 and "completed" in rows[0].text
