"""What a user must see, in a real browser (headless Chromium, Debian's package, driven by
selenium through /usr/bin/chromedriver: nothing is downloaded), on the small finished search
that tests/views/conftest.py copied elsewhere: in `search ui` the runs of the search in the
model-training view, a trial's state and val_accuracy chart, the plots among the parent's
artifacts, the registered model with its alias; in `search dashboard` the study's trials with
their states.

Screenshots of each view go to $BROWSER_SHOTS (default: a folder under pytest's tmp) so that a
person can look at what was asserted.

What each view must show is listed in one place per view (the EXPECT_* tuples and helpers
below), so that a new promise (a state column in the runs table, a figure on a model version)
is one line to add.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path

import pytest

from views_helpers import MODEL, NAME

# the first test here also waits for the session's search (tests/views/conftest.py): ~40 s on
# a quiet machine, ten times that on a loaded one
pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-dev-shm-usage", "--window-size=1400,1000")
WAIT = 240.0  # a page of MLflow's UI takes ~1 s here when the machine is quiet, 40 s loaded
# what the parent run's artifacts must hold (folder/file), and the plots shown as images
EXPECT_PARENT_ARTIFACTS = ("plots", "space.yaml", "best_config.yaml", "summary.csv")
# text on the best trial's run page (besides its name), by the study's state of the trial
EXPECT_TRIAL_PAGE = ("search.state",)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    chromium = shutil.which("chromium") or CHROMIUM
    if not (Path(chromium).is_file() and Path(CHROMEDRIVER).is_file()):
        pytest.skip(f"Chromium or its driver missing ({CHROMIUM}, {CHROMEDRIVER}): install "
                    "Debian's chromium and chromium-driver (.ci/run does when it can)")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed: pip install -e '.[dev]'")
    options = webdriver.ChromeOptions()
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    options.binary_location = chromium
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(WAIT)
    yield driver
    driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    folder = Path(os.environ.get("BROWSER_SHOTS") or tmp_path_factory.mktemp("browser-shots"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"screenshots in {folder}")
    return folder


def body(browser) -> str:
    from selenium.webdriver.common.by import By

    try:
        return browser.find_element(By.TAG_NAME, "body").text
    except Exception:  # the page is being replaced
        return ""


def until(browser, check, what: str, timeout: float = WAIT):
    """Wait until `check(browser)` is truthy; fail saying what was awaited and what shows."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        # a page that React redraws meanwhile: its elements go stale, and are looked up again
        return WebDriverWait(browser, timeout, poll_frequency=0.3,
                             ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda b: check(b), message=what)
    except TimeoutException:
        pytest.fail(f"waited {timeout:.0f} s for {what}; the page shows:\n{body(browser)[:2000]}")


def open_page(browser, url: str, *texts: str) -> str:
    browser.get(url)
    until(browser, lambda b: all(t in body(b) for t in texts), f"{texts} on {url}")
    return body(browser)


def shoot(browser, shots: Path, name: str) -> None:
    time.sleep(0.5)  # the last chart or image paints
    browser.save_screenshot(str(shots / f"{name}.png"))


def rest(ui, path: str) -> dict:
    url = f"http://127.0.0.1:{ui.port}{path}"
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.loads(response.read())


def runs_of(ui) -> dict[str, dict]:
    """The search's runs by their search.key (parent, trial/<id>): name, tags, id."""
    exp = rest(ui, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={NAME}")
    request = urllib.request.Request(
        f"http://127.0.0.1:{ui.port}/api/2.0/mlflow/runs/search",
        data=json.dumps({"experiment_ids": [exp["experiment"]["experiment_id"]]}).encode(),
        headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        found = json.loads(response.read())["runs"]
    out = {}
    for run in found:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        out[tags["search.key"]] = {"id": run["info"]["run_id"], "name": run["info"]["run_name"],
                                   "tags": tags}
    return out


def test_runs_page_shows_the_search_and_its_trials(browser, ui, searched, shots):
    from selenium.webdriver.common.by import By

    runs = runs_of(ui)
    trials = {k: r for k, r in runs.items() if k.startswith("trial/")}
    assert len(trials) == len(searched.study().trials)
    text = open_page(browser, ui.link("MLflow UI:"), runs["parent"]["name"], "matching runs")
    assert "Runs" in text.split("\n") and "Overview" not in text.split("\n"), \
        "not the model-training view"
    shoot(browser, shots, "01-runs")
    expand = browser.find_elements(By.CSS_SELECTOR,
                                   "button[data-component-id*='runnamecellrenderer']")
    assert expand, "the parent run has no control that shows its trials"
    expand[0].click()
    until(browser, lambda b: all(r["name"] in body(b) for r in trials.values()),
          "every trial's run under the parent")
    shoot(browser, shots, "02-runs-expanded")


def test_a_trial_shows_its_state_and_val_accuracy_chart(browser, ui, searched, shots):
    from selenium.webdriver.common.by import By

    best = searched.study().best_trial
    run = next(r for r in runs_of(ui).values()
               if r["id"] == best.user_attrs["mlflow_run_id"])
    url = ui.link(f"best trial #{best.number}")
    text = open_page(browser, url, run["name"], *EXPECT_TRIAL_PAGE)
    assert best.state.name in text  # the state the study gives it
    shoot(browser, shots, "03-best-trial")
    charts = url.replace("?", "/model-metrics?")
    open_page(browser, charts, run["name"])
    box = until(browser, lambda b: b.find_elements(
        By.CSS_SELECTOR, "input[placeholder='Search metric charts']"), "the chart search box")
    box[0].send_keys("val_accuracy")  # the curve (epoch/val_accuracy) and the objective

    def val_accuracy_chart(b):
        for card in b.find_elements(By.CSS_SELECTOR,
                                    "[data-testid='experiment-view-compare-runs-card']"):
            lines = card.text.split("\n")
            if lines and lines[0].endswith("val_accuracy") and card.find_elements(
                    By.CSS_SELECTOR, ".scatterlayer .trace path"):
                return card
        return None

    card = until(browser, val_accuracy_chart, "a drawn val_accuracy chart")
    assert run["name"] in card.text  # the trial's own values
    shoot(browser, shots, "04-best-trial-val-accuracy")


def test_the_parent_run_shows_the_plots(browser, ui, searched, shots):
    from selenium.webdriver.common.by import By

    parent = runs_of(ui)["parent"]
    listed = rest(ui, f"/api/2.0/mlflow/artifacts/list?run_id={parent['id']}&path=plots")
    pngs = sorted(Path(f["path"]).name for f in listed.get("files", [])
                  if f["path"].endswith(".png"))
    assert pngs, listed
    url = ui.link("search run ").replace("?", "/artifacts?")
    open_page(browser, url, *EXPECT_PARENT_ARTIFACTS)
    browser.find_element(By.XPATH, "//*[normalize-space(text())='plots']").click()
    until(browser, lambda b: all(p in body(b) for p in pngs), f"the plots {pngs}")
    for name in pngs:
        browser.find_element(By.XPATH, f"//*[normalize-space(text())='{name}']").click()
        until(browser, lambda b: f"plots/{name}" in body(b) and any(
            b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
            and (i.get_attribute("src") or "").startswith("blob:")
            for i in b.find_elements(By.TAG_NAME, "img")), f"{name} drawn as an image")
        shoot(browser, shots, f"05-plot-{Path(name).stem}")


def test_the_registered_model_shows_its_alias_and_source(browser, ui, searched, shots):
    model = rest(ui, f"/api/2.0/mlflow/registered-models/get?name={MODEL}")["registered_model"]
    version = {a["alias"]: a["version"] for a in model["aliases"]}["best"]
    best = searched.study().best_trial
    source = next(r for r in runs_of(ui).values()
                  if r["id"] == best.user_attrs["mlflow_run_id"])
    text = open_page(browser, ui.link(f"registered model {MODEL}"), MODEL, f"Version {version}")
    shoot(browser, shots, "06-model")
    text = open_page(browser, ui.link(f"alias best: version {version}"), f"Version {version}",
                     "Aliases", "best", "Source Run", source["name"])
    assert model.get("description", "").strip() or "Description" in text
    shoot(browser, shots, "07-model-version")


def test_dashboard_shows_the_study_and_its_trials(browser, dashboard, searched, shots):
    study_url = dashboard.link(f"study {NAME}:")
    open_page(browser, study_url, f"{NAME} (id=", "History")
    shoot(browser, shots, "08-dashboard-study")
    trials = searched.study().trials
    text = open_page(browser, study_url + "/trials", *(f"Trial {t.number}\n" for t in trials))
    for trial in trials:
        line = f"Trial {trial.number}\n{trial.state.name.capitalize()}"
        assert line in text, (line, text[:1500])
    shoot(browser, shots, "09-dashboard-trials")
