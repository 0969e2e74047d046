"""What a user must see, in a real browser (headless Chromium, Debian's package, driven by
selenium through /usr/bin/chromedriver: nothing is downloaded), on the small finished search
that tests/views/conftest.py copied elsewhere (3 trials, one pruned, one quantize stage): in
`search ui` the runs of the search in the model-training view, each trial's state in its name,
the stage runs grouped under `stages` apart from the trials, a trial's val_accuracy chart, the
plots among the parent's artifacts (PNG and the interactive page, the history with the pruned
trial, the importances with their sample), the registered model with its aliases, figures and
descriptions; in `search dashboard` the study's trials with their states. What the pages
show is checked against the REST API too where the page truncates it (run names, metric
histories, logged models).

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
import urllib.parse
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
         "--disable-dev-shm-usage", "--window-size=1600,1000")
WAIT = 240.0  # a page of MLflow's UI takes ~1 s here when the machine is quiet, 40 s loaded
# what the parent run's artifacts must hold (folder/file), and the plots shown as images
EXPECT_PARENT_ARTIFACTS = ("plots", "space.yaml", "best_config.yaml", "summary.csv")
# text on the best trial's run page (besides its name), by the study's state of the trial
EXPECT_TRIAL_PAGE = ("search.state",)
# the stage runs of the search's space (tests/views/views_helpers.py), under `stages`
EXPECT_STAGES = ("0-best", "1-quantize")
# a model version's figures, as tags (search/tracking/versions.py)
EXPECT_FIGURES = ("val_accuracy", "test_accuracy", "num_params", "size_bytes", "latency_ms_b1")
# the logged model of the candidate, named for the stage that made it
EXPECT_CANDIDATE = ("Stage 1-quantize (int8_dynamic)", "quantized")
TAG_STATE = {"COMPLETE": "COMPLETE", "PRUNED": "PRUNED", "FAIL": "FAILED"}
WORD = {"COMPLETE": "complete", "PRUNED": "pruned", "FAIL": "failed"}


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


def rest(ui, path: str, body: dict | None = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{ui.port}{path}", data=data,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def experiment_id(ui) -> str:
    exp = rest(ui, f"/api/2.0/mlflow/experiments/get-by-name?experiment_name={NAME}")
    return exp["experiment"]["experiment_id"]


def runs_of(ui) -> dict[str, dict]:
    """The search's runs by their search.key (parent, trial/<id>, stages, stage/<name>): name,
    tags, id, latest metrics."""
    found = rest(ui, "/api/2.0/mlflow/runs/search", {"experiment_ids": [experiment_id(ui)]})
    out = {}
    for run in found["runs"]:
        tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
        out[tags["search.key"]] = {
            "id": run["info"]["run_id"], "name": run["info"]["run_name"], "tags": tags,
            "metrics": {m["key"]: m["value"] for m in run["data"].get("metrics", [])}}
    return out


def steps(ui, run_id: str, key: str) -> list[int]:
    found = rest(ui, f"/api/2.0/mlflow/metrics/get-history?run_id={run_id}"
                     f"&metric_key={urllib.parse.quote(key, safe='')}")
    return sorted(m.get("step", 0) for m in found.get("metrics", []))


def row_text(browser, element) -> str:
    return browser.execute_script(
        "const row = arguments[0].closest('[role=row]'); return row ? row.innerText : ''",
        element)


def test_runs_page_shows_the_search_and_its_trials(browser, ui, searched, shots):
    """The trials under the search, each with its state in its name; the stage runs apart,
    under `stages`, shown only when that run is opened."""
    from selenium.webdriver.common.by import By

    runs, study = runs_of(ui), searched.study()
    parent = runs["parent"]
    trials = {k: r for k, r in runs.items() if k.startswith("trial/")}
    assert len(trials) == len(study.trials)
    states = {t.number: t.state.name for t in study.trials}
    assert {"COMPLETE", "PRUNED"} <= set(states.values()), states  # the search's promise
    for run in trials.values():
        number = int(run["tags"]["optuna.trial_number"])
        assert run["name"] == f"trial-{number:03d} ({WORD[states[number]]})"
        assert run["tags"]["search.state"] == TAG_STATE[states[number]]
        assert run["tags"]["search.kind"] == "trial"
        assert run["tags"]["mlflow.parentRunId"] == parent["id"]
    group = runs["stages"]
    assert group["name"] == "stages" and group["tags"]["search.kind"] == "stages"
    assert group["tags"]["mlflow.parentRunId"] == parent["id"]
    stages = {k: r for k, r in runs.items() if k.startswith("stage/")}
    assert sorted(r["name"] for r in stages.values()) == list(EXPECT_STAGES)
    for run in stages.values():
        assert run["tags"]["search.kind"] == "stage"
        assert run["tags"]["mlflow.parentRunId"] == group["id"]

    text = open_page(browser, ui.link("MLflow UI:"), parent["name"], "matching runs")
    assert "Runs" in text.split("\n") and "Overview" not in text.split("\n"), \
        "not the model-training view"
    shoot(browser, shots, "01-runs")
    expand = browser.find_elements(By.CSS_SELECTOR,
                                   "button[data-component-id*='runnamecellrenderer']")
    assert expand, "the parent run has no control that shows its trials"
    expand[0].click()
    text = until(browser, lambda b: all(r["name"] in body(b) for r in trials.values())
                 and "stages" in body(b).split("\n") and body(b),
                 "every trial's run and the `stages` run under the parent")
    assert not any(name in text.split("\n") for name in EXPECT_STAGES), \
        "stage runs mixed with the trials"
    opener = [b for b in browser.find_elements(
        By.CSS_SELECTOR, "button[data-component-id*='runnamecellrenderer']")
        if "stages" in row_text(browser, b).split("\n")]
    assert opener, "the `stages` run has no control that shows its stages"
    opener[0].click()
    until(browser, lambda b: all(n in body(b).split("\n") for n in EXPECT_STAGES),
          f"the stage runs {EXPECT_STAGES} under `stages`")
    shoot(browser, shots, "02-runs-expanded")


def test_runs_log_the_objective_once_and_curves_per_epoch(ui, searched):
    """A trial's `val_accuracy` is one value, the study's; what has one value per epoch is a
    curve under `epoch/` or `training/`, at steps 1..its last epoch; constants (the epoch, the
    batch size, the parameter count) and single points are no curves. Stages alike."""
    study = searched.study()
    for key, run in runs_of(ui).items():
        if not key.startswith(("trial/", "stage/")):
            continue
        metrics = run["metrics"]
        curves = sorted(k for k in metrics if "/" in k)
        assert not {"epoch", "batch_size"} & set(metrics), (run["name"], sorted(metrics))
        assert not {"epoch/num_params", "epoch/batch_size", "epoch/horizon"} & set(curves)
        assert {k.split("/")[0] for k in curves} <= {"epoch", "training"}, curves
        if key.startswith("trial/"):
            trial = study.trials[int(run["tags"]["optuna.trial_number"])]
            assert metrics["val_accuracy"] == pytest.approx(trial.value), run["name"]
            assert "epoch/val_accuracy" in curves and "training/lr" in curves
            epochs = list(range(1, max(trial.intermediate_values) + 1))
        else:
            assert "val_accuracy" in metrics and "num_params" in metrics
            epochs = []
        for metric in metrics:
            assert steps(ui, run["id"], metric) == (epochs if "/" in metric else [0]), \
                (run["name"], metric)


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
    """The PNGs drawn as images; the interactive page (plots.html) with the history of every
    trial, the pruned one too, and the importances saying how many trials they rest on."""
    from selenium.webdriver.common.by import By

    parent = runs_of(ui)["parent"]
    listed = rest(ui, f"/api/2.0/mlflow/artifacts/list?run_id={parent['id']}&path=plots")
    files = sorted(Path(f["path"]).name for f in listed.get("files", []))
    pngs = [name for name in files if name.endswith(".png")]
    assert pngs and "plots.html" in files, listed
    url = ui.link("search run ").replace("?", "/artifacts?")
    open_page(browser, url, *EXPECT_PARENT_ARTIFACTS)
    browser.find_element(By.XPATH, "//*[normalize-space(text())='plots']").click()
    until(browser, lambda b: all(p in body(b) for p in files), f"the plots {files}")
    for name in pngs:
        browser.find_element(By.XPATH, f"//*[normalize-space(text())='{name}']").click()
        until(browser, lambda b: f"plots/{name}" in body(b) and any(
            b.execute_script("return arguments[0].complete && arguments[0].naturalWidth", i)
            and (i.get_attribute("src") or "").startswith("blob:")
            for i in b.find_elements(By.TAG_NAME, "img")), f"{name} drawn as an image")
        shoot(browser, shots, f"05-plot-{Path(name).stem}")
    trials = searched.study().trials
    count = {s: sum(t.state.name == s for t in trials) for s in ("COMPLETE", "PRUNED")}
    assert count["PRUNED"], "no pruned trial to show"
    expect = (f"Optimisation history of {len(trials)} trials: {count['COMPLETE']} complete, "
              f"{count['PRUNED']} pruned",
              f"Hyperparameter importances (PED-ANOVA) from {count['COMPLETE']} complete trials",
              f"Learning curves of {len(trials)} trials")
    browser.find_element(By.XPATH, "//*[normalize-space(text())='plots.html']").click()

    def page_text(b):  # MLflow shows an HTML artifact in an iframe of a blob URL
        for frame in b.find_elements(By.TAG_NAME, "iframe"):
            b.switch_to.frame(frame)
            try:
                text = body(b)
            finally:
                b.switch_to.default_content()
            if all(e in text for e in expect):
                return text
        return None

    until(browser, page_text, f"plots.html showing {expect}")
    shoot(browser, shots, "05-plots-html")


def test_the_registered_model_shows_its_alias_and_source(browser, ui, searched, shots):
    """Each alias explained; each version with its figures as tags, its source and a
    description; the logged models named for what they are, none failed or left over."""
    model = rest(ui, f"/api/2.0/mlflow/registered-models/get?name={MODEL}")["registered_model"]
    aliases = {a["alias"]: a["version"] for a in model["aliases"]}
    version, candidate = aliases["best"], aliases["candidate"]
    best = searched.study().best_trial
    source = next(r for r in runs_of(ui).values()
                  if r["id"] == best.user_attrs["mlflow_run_id"])
    versions = {}
    for number in (version, candidate):
        found = rest(ui, f"/api/2.0/mlflow/model-versions/get?name={MODEL}&version={number}")
        versions[number] = found["model_version"]
        tags = {t["key"]: t["value"] for t in versions[number].get("tags", [])}
        assert set(EXPECT_FIGURES) <= set(tags), (number, tags)
        versions[number]["tags"] = tags
    assert float(versions[version]["tags"]["val_accuracy"]) == pytest.approx(best.value,
                                                                             rel=1e-5)
    assert versions[version]["tags"]["source"] == f"trial {best.number}"
    assert versions[version]["description"].startswith(f"Trial {best.number} of the search")
    assert versions[candidate]["tags"]["source"] == "stage 1-quantize"
    assert versions[candidate]["description"].startswith(EXPECT_CANDIDATE[0])
    logged = rest(ui, "/api/2.0/mlflow/logged-models/search",
                  {"experiment_ids": [experiment_id(ui)]})["models"]
    assert sorted((m["info"]["name"], m["info"]["status"]) for m in logged) == sorted(
        [(f"trial-{best.number:03d}", "LOGGED_MODEL_READY"),
         (EXPECT_CANDIDATE[1], "LOGGED_MODEL_READY")])

    text = open_page(browser, ui.link(f"registered model {MODEL}"), MODEL, f"Version {version}",
                     f"Version {candidate}")
    for alias in ("best", "candidate"):  # the registered model's description says each
        assert f"{alias}: " in text and f"@ {alias}" in text, (alias, text[:2000])
    shoot(browser, shots, "06-model")
    text = open_page(browser, ui.link(f"alias best: version {version}"), f"Version {version}",
                     "Aliases", "best", "Source Run", source["name"], "Description",
                     f"Trial {best.number} of the search", *EXPECT_FIGURES)
    shoot(browser, shots, "07-model-version-best")
    open_page(browser, ui.link(f"alias candidate: version {candidate}"), f"Version {candidate}",
              "candidate", "Source Run", "1-quantize", *EXPECT_CANDIDATE, *EXPECT_FIGURES)
    shoot(browser, shots, "07-model-version-candidate")


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
