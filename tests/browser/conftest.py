"""The playground in a real browser: headless Chromium (Debian's chromium and
chromium-driver) driven by Selenium against the kiln binary serving LeNet, the Transformer
captioner and a GRU language model. Screenshots go to target/browser-artifacts/."""

import sys
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests"))
from kiln_process import running_kiln, serving_folders  # noqa: E402

MODELS = ["lenet-fashion", "captioner-transformer", "gru-web-en"]
ARTIFACTS = ROOT / "target" / "browser-artifacts"


@pytest.fixture(scope="session")
def kiln(tmp_path_factory):
    folders = [ROOT / "models" / model for model in MODELS]
    with serving_folders(folders, tmp_path_factory.mktemp("browser")) as addresses:
        yield f"http://{addresses['http']}"


@pytest.fixture(scope="session")
def kiln_with_key(tmp_path_factory):
    """A second server that asks for an API key."""
    workdir = tmp_path_factory.mktemp("browser-key")
    repository = workdir / "repository"
    repository.mkdir()
    (repository / "lenet-fashion").symlink_to(ROOT / "models" / "lenet-fashion")
    with running_kiln(repository, workdir / "kiln.log", extra_args=["--api-key", "sk-browser"]) as addresses:
        yield f"http://{addresses['http']}"


@pytest.fixture
def browser(request):
    options = webdriver.ChromeOptions()
    for argument in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"]:
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    driver.implicitly_wait(0)
    yield driver
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    driver.save_screenshot(str(ARTIFACTS / f"{request.node.name}.png"))
    driver.quit()
