"""The web page in a real browser: Debian's headless chromium, driven by Selenium, against `mqspn serve`
(uvicorn on a free loopback port). It picks a synthetic example, asks for its entities and checks that
the page shows exactly what the API returned: a highlight per entity, a drawn box per grounded one,
the "not in the picture" list. Skipped, with the reason, without chromium, chromedriver or selenium."""
from __future__ import annotations

import io
import json
import shutil
import socket
import threading

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install 'mqspn[serve]'")
uvicorn = pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install 'mqspn[serve]'")
pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[dev]')")
if not (shutil.which("chromium") and shutil.which("chromedriver")):
    pytest.skip("chromium and chromedriver not found: apt-get install -y chromium chromium-driver",
                allow_module_level=True)

from PIL import Image  # noqa: E402
from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as ec  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from helpers_model import tiny_model  # noqa: E402
from mqspn.checkpoint import save_pretrained  # noqa: E402
from mqspn.predictions import entity_to_json  # noqa: E402
from mqspn.predictor import Predictor  # noqa: E402
from mqspn.serve.app import create_app  # noqa: E402
from mqspn.serve.examples import example_posts  # noqa: E402

WAIT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """-> (base URL, predictor): a seeded tiny model served by uvicorn in a thread on 127.0.0.1."""
    directory = save_pretrained(tiny_model(seed=0).eval(), tmp_path_factory.mktemp("browser") / "tiny")
    predictor = Predictor.from_pretrained(directory, "cpu")
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound here, so no other process can take the port before uvicorn listens
    config = uvicorn.Config(create_app(predictor, directory), log_level="warning")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    for _ in range(WAIT_S * 20):
        if server.started or not thread.is_alive():
            break
        threading.Event().wait(0.05)
    assert server.started, "uvicorn did not start"
    yield f"http://127.0.0.1:{sock.getsockname()[1]}", predictor
    server.should_exit = True
    thread.join(WAIT_S)
    sock.close()


@pytest.fixture(scope="module")
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def wait(driver, condition):
    return WebDriverWait(driver, WAIT_S).until(condition)


def test_the_page_shows_the_entities_and_boxes_the_api_returned(server, browser, tmp_path):
    url, predictor = server
    browser.get(url)
    example = next(iter(example_posts().values()))
    wait(browser, ec.element_to_be_clickable((By.CSS_SELECTOR, f"button.example[title='{example.text}']"))).click()
    wait(browser, lambda d: d.find_element(By.ID, "text").get_attribute("value") == example.text)
    browser.find_element(By.ID, "predict").click()
    raw = wait(browser, ec.visibility_of_element_located((By.ID, "raw")))
    result = json.loads(raw.text)

    # The page sent the example's text, picture and boxes: the answer is the predictor's own.
    post = predictor.predict(example.text, image=Image.open(io.BytesIO(example.jpeg)), proposals=example.boxes)
    assert result["entities"] == [{"text": e.text(post.words), **entity_to_json(e)} for e in post.entities]
    grounded = [e for e in result["entities"] if e["box"]]
    assert grounded, "the seeded model returned no grounded entity: the box checks below would test nothing"

    marks = browser.find_elements(By.CSS_SELECTOR, "#post mark.entity")
    shown = [(int(m.get_attribute("data-start")), m.find_element(By.CLASS_NAME, "words").text,
              m.find_element(By.TAG_NAME, "sub").text) for m in marks]
    assert shown == sorted((e["start"], e["text"], e["type"]) for e in result["entities"])
    wait(browser, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#boxes g.box")) == len(grounded))
    for group, entity in zip(browser.find_elements(By.CSS_SELECTOR, "#boxes g.box"), grounded):
        rect = group.find_element(By.TAG_NAME, "rect")
        drawn = [float(rect.get_attribute(k)) for k in ("x", "y", "width", "height")]
        x1, y1, x2, y2 = entity["box"]
        assert drawn == pytest.approx([x1, y1, x2 - x1, y2 - y1])
        assert group.find_element(By.TAG_NAME, "text").text == f"{entity['text']} / {entity['type']}"
    ungrounded = browser.find_elements(By.CSS_SELECTOR, "#ungrounded li.ungrounded")
    assert len(ungrounded) == len(result["entities"]) - len(grounded)
    browser.save_screenshot(str(tmp_path / "page.png"))
    assert (tmp_path / "page.png").stat().st_size > 0


def test_an_api_error_appears_on_the_page_in_words(server, browser):
    url, _ = server
    browser.get(url)
    browser.find_element(By.ID, "text").clear()
    browser.find_element(By.ID, "predict").click()
    error = wait(browser, ec.visibility_of_element_located((By.ID, "error")))
    assert "text: empty" in error.text and "field: text" in error.text
