"""The dashboard in a real headless Chromium against a real `easysched run`, driven as a person would.

Screenshots of each page go to `.artifacts/browser/` (or $EASYSCHED_ARTIFACTS/browser).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from easysched_es.runtime.embedded.local_run import pid_alive, start_run, stop_run
from tests.harness import cli, cli_json, kill_leftovers

pytestmark = pytest.mark.slow

HOSTILE = "<img src=x onerror=alert(1)>"
FLOW = f"""
name: web_demo
description: the dashboard's browser test
tasks:
  - name: prep
    type: SHELL
    command: "echo prep"
  - name: wait_upstream
    type: DEPENDENT
    dependence:
      check_interval: 1
      items: [{{workflow: never_ran}}]
  - name: work
    type: SHELL
    command: 'i=0; while true; do i=$((i+1)); echo "line $i <b>bold</b>"; sleep 0.2; done'
    upstream: [prep]
  - name: "{HOSTILE}"
    type: SHELL
    command: "true"
    upstream: [work, wait_upstream]
"""
WAIT_S = 60.0


@pytest.fixture
def dashboard(tmp_path: Path) -> Iterator[dict[str, Any]]:
    log = open(tmp_path / "run.log", "wb")  # noqa: SIM115 - closed below
    proc = start_run(tmp_path, log, "--kill-grace", "2", "--ui-port", "0")
    try:
        info = json.loads((tmp_path / "service.json").read_text())
        yield {"root": tmp_path, "url": info["url"], "token": info["token"], "proc": proc}
    finally:
        stop_run(proc)
        log.close()
        kill_leftovers(tmp_path)


def wait(browser: Any, what: str, probe: Callable[[Any], Any]) -> Any:
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(browser, WAIT_S, poll_frequency=0.1,
                             ignored_exceptions=(StaleElementReferenceException,)).until(probe)
    except TimeoutException:
        raise AssertionError(f"timed out after {WAIT_S}s waiting for {what}") from None


def node(browser: Any, task: str) -> Any:
    return browser.execute_script(
        "return Array.from(document.querySelectorAll('svg.dag .node')).find(n => n.dataset.task === arguments[0])",
        task)


def state_of(browser: Any, task: str) -> str:
    found = node(browser, task)
    return "" if found is None else str(found.get_attribute("data-state"))


def test_the_dashboard_end_to_end(browser: Any, artifacts: Path, dashboard: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    root, url = dashboard["root"], dashboard["url"]
    (root / "flow.yaml").write_text(FLOW)

    # Overview: an instance started from the CLI appears without a reload.
    browser.get(url + "/")
    assert browser.find_element(By.TAG_NAME, "h1").text == "Overview"
    cli(root, "define", str(root / "flow.yaml"), check=True)
    instance = cli(root, "start", "web_demo", check=True).stdout.strip()
    link = f'a[href="/instance/{instance}"]'
    wait(browser, "the new instance on the overview", lambda b: b.find_elements(By.CSS_SELECTOR, "#recent " + link))
    browser.save_screenshot(str(artifacts / "overview.png"))

    # Instance: the DAG coloured by state, live.
    browser.get(f"{url}/instance/{instance}")
    wait(browser, "work RUNNING_EXECUTION in the DAG", lambda b: state_of(b, "work") == "RUNNING_EXECUTION")
    wait(browser, "prep SUCCESS in the DAG", lambda b: state_of(b, "prep") == "SUCCESS")
    assert "s-RUNNING_EXECUTION" in node(browser, "work").get_attribute("class")
    assert state_of(browser, "wait_upstream") == "RUNNING_EXECUTION"  # a DEPENDENT task waiting
    # A task name that is HTML is shown as text.
    assert node(browser, HOSTILE) is not None
    assert node(browser, HOSTILE).find_element(By.TAG_NAME, "text").text.startswith("<img src=x")
    assert browser.find_elements(By.TAG_NAME, "img") == []

    # The log tail grows while the task runs; HTML in it is text.
    node(browser, "work").click()
    wait(browser, "the log tail", lambda b: "line 2 <b>bold</b>" in b.find_element(By.ID, "log-tail").text)
    first = len(browser.find_element(By.ID, "log-tail").text)
    wait(browser, "the log tail to grow", lambda b: len(b.find_element(By.ID, "log-tail").text) > first + 40)
    assert browser.find_elements(By.CSS_SELECTOR, "#log-tail b") == []
    browser.save_screenshot(str(artifacts / "instance.png"))

    # Stop without the token: refused, nothing changes.
    browser.find_element(By.ID, "action-stop").click()
    wait(browser, "the refusal", lambda b: "token is missing" in b.find_element(By.ID, "verdict").text)
    assert cli_json(root, "status", instance)["state"] == "RUNNING_EXECUTION"

    # With the token: STOP, and the process is gone.
    pid = next(t["pid"] for t in cli_json(root, "status", instance)["tasks"] if t["name"] == "work")
    assert pid and pid_alive(pid)
    token = browser.find_element(By.ID, "token")
    token.send_keys(dashboard["token"])
    token.send_keys("\t")  # change event: the page keeps it
    browser.find_element(By.ID, "action-stop").click()
    verdict = wait(browser, "the stop's verdict",
                   lambda b: "stop accepted" in b.find_element(By.ID, "verdict").text and
                   b.find_element(By.ID, "verdict").text)
    stop_offset = int(verdict.split("offset ")[1].split(":")[0])
    wait(browser, "STOP on the page", lambda b: b.find_element(By.ID, "instance-state").text == "STOP")
    assert state_of(browser, "work") == "KILL"
    assert not pid_alive(pid)
    assert "DEPENDENT_CHECK" not in browser.find_element(By.ID, "timers").text
    browser.save_screenshot(str(artifacts / "instance-stopped.png"))

    # Time travel: move the slider back before the stop: the earlier state and its timer.
    with urllib.request.urlopen(f"{url}/api/instance/{instance}", timeout=30) as response:
        offsets = json.loads(response.read())["offsets"]
    wait(browser, "the slider to know every offset",
         lambda b: int(b.find_element(By.ID, "tt-slider").get_attribute("max")) == len(offsets) - 1)
    before = max(i for i, o in enumerate(offsets) if o < stop_offset)
    browser.execute_script("const s = document.getElementById('tt-slider'); s.value = arguments[0];"
                           "s.dispatchEvent(new Event('input'));", before)
    wait(browser, "the state before the stop", lambda b: b.find_element(By.ID, "instance-state").text ==
         "RUNNING_EXECUTION")
    wait(browser, "work running again in the past", lambda b: state_of(b, "work") == "RUNNING_EXECUTION")
    wait(browser, "its timer", lambda b: "DEPENDENT_CHECK" in b.find_element(By.ID, "timers").text)
    assert f"offset {offsets[before]}" in browser.find_element(By.ID, "tt-label").text
    assert "caused" in browser.find_element(By.ID, "tt-command").text
    browser.save_screenshot(str(artifacts / "time-travel.png"))
    shared = browser.current_url
    assert shared.endswith(f"?at={offsets[before]}")
    browser.find_element(By.ID, "tt-next").click()  # a step forward, then the shared link from scratch
    browser.get(shared)
    wait(browser, "the shared link's state", lambda b: "DEPENDENT_CHECK" in b.find_element(By.ID, "timers").text and
         b.find_element(By.ID, "instance-state").text == "RUNNING_EXECUTION")

    # SQL console.
    browser.get(url + "/sql")
    box = browser.find_element(By.ID, "sql")
    box.clear()
    box.send_keys(f"SELECT task, state FROM task_instances WHERE instance = '{instance}' ORDER BY task")
    browser.find_element(By.ID, "run-sql").click()
    wait(browser, "the query's rows", lambda b: "KILL" in b.find_element(By.ID, "sql-result").text)
    assert "work" in browser.find_element(By.ID, "sql-result").text
    assert "/api/sql.csv?sql=" in browser.find_element(By.ID, "csv").get_attribute("href")
    browser.save_screenshot(str(artifacts / "sql.png"))


def test_a_cross_site_form_cannot_stop_a_workflow(browser: Any, dashboard: dict[str, Any]) -> None:
    from selenium.webdriver.common.by import By

    root, url = dashboard["root"], dashboard["url"]
    (root / "flow.yaml").write_text(FLOW)
    cli(root, "define", str(root / "flow.yaml"), check=True)
    instance = cli(root, "start", "web_demo", check=True).stdout.strip()
    # A page from another origin posts a form (no preflight) to the action, token and all.
    evil = (f'<form id=f method=post enctype=text/plain action="{url}/api/actions/stop">'
            f'<input name=\'{{"instance":"{instance}","x":"\' value=\'"}}\'></form>')
    browser.get("data:text/html," + urllib.request.quote(evil))
    browser.execute_script("document.getElementById('f').submit()")
    wait(browser, "the refusal", lambda b: "forbidden" in b.find_element(By.TAG_NAME, "body").text)
    assert cli_json(root, "status", instance)["state"] == "RUNNING_EXECUTION"
