"""The image as `docker run` users get it: healthy, serving the bundled models as a
non-root user, scraped by Prometheus, and draining in-flight requests on `docker stop`."""

import json
import shutil
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from conftest import ROOT, docker, inspect, kiln_container, post


def test_serves_classifies_and_reports_metrics_as_a_non_root_user():
    with kiln_container() as (container, http):
        status, body = post(f"http://{http}/v1/models/lenet-fashion/classify",
                            (ROOT / "examples/images/sneaker.png").read_bytes(), "image/png")
        assert status == 200
        assert json.loads(body)["predictions"][0]["label"] == "Sneaker"

        with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
            metrics = response.read().decode()
        assert 'kiln_request_success_total{' in metrics and 'model="lenet-fashion"' in metrics

        assert inspect(container, "{{.Config.User}}") == "kiln"
        # The server process itself (PID 1), as the kernel sees it.
        uid = docker("exec", container, "sh", "-c", "awk '/^Uid:/ {print $2}' /proc/1/status")
        assert uid != "0" and int(uid) > 0


def test_configuration_comes_from_the_environment():
    with kiln_container("--env", "KILN_API_KEYS=container-secret") as (_, http):
        request = urllib.request.Request(
            f"http://{http}/v1/models/lenet-fashion/classify",
            data=(ROOT / "examples/images/bag.png").read_bytes(),
            headers={"Content-Type": "image/png"},
        )
        try:
            urllib.request.urlopen(request, timeout=30)
            raise AssertionError("answered without the API key")
        except urllib.error.HTTPError as error:
            assert error.code == 401
        request.add_header("Authorization", "Bearer container-secret")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200


def long_generation_repository():
    """A model repository holding only lstm-web-en, allowed generations long enough to be
    in flight for seconds however fast the machine is."""
    repository = Path(tempfile.mkdtemp(prefix="kiln-drain-"))
    shutil.copytree(ROOT / "models/lstm-web-en", repository / "lstm-web-en")
    config = repository / "lstm-web-en/model.toml"
    config.write_text(config.read_text().replace("max_new_tokens = 256",
                                                 f"max_new_tokens = {DRAIN_TOKENS}"))
    # The container's non-root user reads it through the bind mount.
    for path in [repository, *repository.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return repository


def pending_generations(http):
    with urllib.request.urlopen(f"http://{http}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("kiln_pending_requests{") and 'model="lstm-web-en"' in line)


DRAIN_TOKENS = 4096


def test_docker_stop_answers_requests_in_flight_then_exits_zero():
    repository = long_generation_repository()
    try:
        with kiln_container("--volume", f"{repository}:/srv/drain-models:ro",
                            "--env", "KILN_MODEL_REPOSITORY=/srv/drain-models") as (container, http):
            prompt = json.dumps({"text": "and the children of", "max_tokens": DRAIN_TOKENS,
                                 "ignore_eos": True}).encode()
            answers = []

            def generate():
                try:
                    answers.append(post(f"http://{http}/v1/models/lstm-web-en/generate",
                                        prompt, "application/json", timeout=120))
                except OSError as error:
                    answers.append((None, str(error).encode()))

            callers = [threading.Thread(target=generate) for _ in range(8)]
            for caller in callers:
                caller.start()
            # SIGTERM arrives while all eight are running and none is answered yet.
            deadline = time.time() + 30
            while pending_generations(http) < 8 and time.time() < deadline:
                time.sleep(0.05)
            assert pending_generations(http) == 8
            assert answers == []
            docker("stop", "--time", "60", container, timeout=120)
            for caller in callers:
                caller.join(timeout=120)

            assert [status for status, _ in answers] == [200] * 8, answers
            assert all(json.loads(body)["usage"]["completion_tokens"] == DRAIN_TOKENS
                       for _, body in answers)
            assert inspect(container, "{{.State.ExitCode}}") == "0"
    finally:
        shutil.rmtree(repository, ignore_errors=True)
