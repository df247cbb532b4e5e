"""A person's visit to the playground, in headless Chromium: classify a real image, caption
a scene, see the next words and a streamed continuation, watch the live panel move under
load, use it on a phone-sized window and by keyboard, and give an API key when asked."""

import json
import threading
import time
import urllib.request
from pathlib import Path

from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import Select, WebDriverWait

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "examples" / "images"
SCENES = ROOT / "examples" / "scenes"


def wait(browser, condition, timeout=30):
    return WebDriverWait(browser, timeout).until(lambda _: condition())


def open_page(browser, base, model):
    browser.get(base + "/")
    wait(browser, lambda: model in [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")])
    Select(browser.find_element(By.ID, "model")).select_by_value(model)


def texts(browser, selector):
    return [e.text for e in browser.find_elements(By.CSS_SELECTOR, selector)]


def test_an_uploaded_image_gets_its_label(browser, kiln):
    open_page(browser, kiln, "lenet-fashion")
    browser.find_element(By.ID, "image").send_keys(str(IMAGES / "shirt.png"))
    labels = wait(browser, lambda: texts(browser, "#labels .label"))
    assert labels[0] == "Shirt" and len(labels) == 5
    assert browser.find_element(By.ID, "preview").is_displayed()


def test_a_captioner_describes_a_scene(browser, kiln):
    open_page(browser, kiln, "captioner-transformer")
    Select(browser.find_element(By.ID, "beam")).select_by_value("3")
    browser.find_element(By.ID, "image").send_keys(str(SCENES / "scene-2.png"))
    caption = wait(browser, lambda: (t := browser.find_element(By.ID, "caption").text) not in ("", "…") and t)
    request = urllib.request.Request(
        kiln + "/v1/models/captioner-transformer/caption?beam_size=3",
        data=(SCENES / "scene-2.png").read_bytes(), headers={"content-type": "image/png"},
    )
    assert caption == json.load(urllib.request.urlopen(request))["caption"]
    nouns = ("t-shirt", "trousers", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "boot")
    assert any(noun in caption for noun in nouns), caption


def test_text_shows_next_words_and_a_streamed_continuation(browser, kiln):
    open_page(browser, kiln, "gru-web-en")
    prompt = browser.find_element(By.ID, "prompt")
    prompt.clear()
    prompt.send_keys("and the children of")
    wait(browser, lambda: "israel" in texts(browser, "#next-words .label"))
    browser.find_element(By.ID, "max-tokens").clear()
    browser.find_element(By.ID, "max-tokens").send_keys("24")
    browser.find_element(By.ID, "continue").click()
    wait(browser, lambda: browser.find_element(By.ID, "continue").is_enabled())
    words = browser.find_element(By.CSS_SELECTOR, "#continuation .words")
    assert len(words.text.split()) >= 3, words.text
    # The words arrived as a stream, chunk by chunk, not as one answer.
    assert int(words.get_attribute("data-chunks")) >= 3


def test_the_live_panel_moves_under_load(browser, kiln):
    open_page(browser, kiln, "lenet-fashion")
    image = (IMAGES / "bag.png").read_bytes()
    stop = threading.Event()

    def load():
        while not stop.is_set():
            request = urllib.request.Request(kiln + "/v1/models/lenet-fashion/classify",
                                             data=image, headers={"content-type": "image/png"})
            urllib.request.urlopen(request).read()

    threads = [threading.Thread(target=load) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        row = 'tr[data-model="lenet-fashion"]'
        rate = lambda: float(browser.find_element(By.CSS_SELECTOR, f"{row} td.rps").text.replace("–", "0"))
        wait(browser, lambda: rate() > 1.0)
        p99 = browser.find_element(By.CSS_SELECTOR, f"{row} td.p99").text
        batch = browser.find_element(By.CSS_SELECTOR, f"{row} td.batch").text
        assert float(p99) > 0 and float(batch) >= 1.0
        assert "img/s/W" in browser.find_element(By.ID, "energy-note").text
    finally:
        stop.set()
        for t in threads:
            t.join()


def test_keyboard_and_phone(browser, kiln):
    browser.set_window_size(390, 844)
    open_page(browser, kiln, "lenet-fashion")
    # One column on a phone: the live panel sits under the model panel, nothing scrolls sideways.
    tried = browser.find_element(By.ID, "try").rect
    live = browser.find_element(By.ID, "live").rect
    assert live["y"] > tried["y"] + tried["height"] - 1
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth + 1")
    # The model list and the image chooser are reached with Tab.
    focused = set()
    for _ in range(10):
        ActionChains(browser).send_keys(Keys.TAB).perform()
        focused.add(browser.switch_to.active_element.get_attribute("id"))
    assert {"model", "image"} <= focused, focused


def test_the_page_asks_for_the_api_key(browser, kiln_with_key):
    browser.get(kiln_with_key + "/")
    note = lambda: browser.find_element(By.ID, "energy-note").text
    wait(browser, lambda: "API key" in note())
    assert browser.find_element(By.ID, "key-box").get_attribute("open") is not None
    browser.find_element(By.ID, "api-key").send_keys("sk-browser", Keys.ENTER)
    wait(browser, lambda: "lenet-fashion" in [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#model option")])
    browser.find_element(By.ID, "image").send_keys(str(IMAGES / "trouser.png"))
    assert wait(browser, lambda: texts(browser, "#labels .label"))[0] == "Trouser"
