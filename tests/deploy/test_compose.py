"""deploy/compose.yaml (Kiln scraped by Prometheus) and deploy/scale-out/compose.yaml
(three replicas behind nginx), brought up with docker-compose as the README says."""

import json
import os
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from contextlib import contextmanager

import grpc
import yaml
from kserve.protocol.grpc import grpc_predict_v2_pb2 as v2
from kserve.protocol.grpc.grpc_predict_v2_pb2_grpc import GRPCInferenceServiceStub

from conftest import ROOT, docker, post, published

SNEAKER = (ROOT / "examples/images/sneaker.png").read_bytes()


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def stack(compose_file, *services, **env):
    """The compose file's services up under a project name of their own; always taken
    down (containers, networks) afterwards. Yields a function that runs docker-compose."""
    project = f"kilntest{uuid.uuid4().hex[:8]}"
    environment = {**os.environ, **{k: str(v) for k, v in env.items()}}

    def compose(*args, timeout=900):
        return subprocess.run(["docker-compose", "--file", str(compose_file), "--project-name",
                               project, *args], check=True, capture_output=True, text=True,
                              env=environment, timeout=timeout).stdout.strip()

    try:
        compose("up", "--detach", *services)
        yield compose
    finally:
        subprocess.run(["docker-compose", "--file", str(compose_file), "--project-name", project,
                        "down", "--timeout", "60", "--remove-orphans"],
                       capture_output=True, env=environment, timeout=300)


def wait_for(url, timeout=180):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(1)
    raise AssertionError(f"{url} did not answer 200 within {timeout} s")


class ClassifyLoad:
    """Callers posting the sneaker photo to `http` in a loop; every outcome is kept with
    the time it was answered."""

    def __init__(self, http, callers=8):
        self.url = f"http://{http}/v1/models/lenet-fashion/classify"
        self.outcomes, self.lock, self.stop = [], threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self.call) for _ in range(callers)]

    def call(self):
        while not self.stop.is_set():
            try:
                status, body = post(self.url, SNEAKER, "image/png", timeout=30)
                ok = status == 200 and json.loads(body)["predictions"][0]["label"] == "Sneaker"
                outcome = "ok" if ok else f"{status} {body[:200]!r}"
            except urllib.error.HTTPError as error:
                outcome = f"{error.code} {error.read()[:200]!r}"
            except OSError as error:
                outcome = str(error)
            with self.lock:
                self.outcomes.append((time.monotonic(), outcome))

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *_):
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)

    def failures(self, since=0.0, until=float("inf")):
        with self.lock:
            return [o for t, o in self.outcomes if since <= t < until and o != "ok"]

    def answered(self, since=0.0):
        with self.lock:
            return sum(1 for t, o in self.outcomes if t >= since and o == "ok")


def prometheus_query(address, query):
    url = f"http://{address}/api/v1/query?" + urllib.parse.urlencode({"query": query})
    with urllib.request.urlopen(url, timeout=10) as response:
        answer = json.loads(response.read())
    assert answer["status"] == "success", answer
    return answer["data"]["result"]


def dashboard_queries():
    dashboard = json.loads((ROOT / "deploy/grafana/kiln-dashboard.json").read_text())
    return [target["expr"].replace("$model", ".*").replace("$__rate_interval", "1m")
            for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_compose_prometheus_scrapes_kiln_images_per_second():
    compose_file = ROOT / "deploy/compose.yaml"
    ports = {"KILN_HTTP_PORT": free_port(), "KILN_GRPC_PORT": free_port(),
             "PROMETHEUS_PORT": free_port(), "GRAFANA_PORT": free_port()}
    http, prometheus = f"127.0.0.1:{ports['KILN_HTTP_PORT']}", f"127.0.0.1:{ports['PROMETHEUS_PORT']}"
    with stack(compose_file, "kiln", "prometheus", **ports):
        wait_for(f"http://{http}/v2/health/ready")
        wait_for(f"http://{prometheus}/-/ready")
        with ClassifyLoad(http, callers=2) as load:
            deadline, rate = time.time() + 90, []
            while time.time() < deadline and not rate:
                time.sleep(2)
                rate = [float(r["value"][1]) for r in prometheus_query(
                    prometheus, 'kiln_items_per_second{job="kiln",model="lenet-fashion"}')
                    if float(r["value"][1]) > 0]
        assert rate, "Prometheus never saw Kiln's images/s above zero"
        assert load.failures() == []
        assert [r["value"][1] for r in prometheus_query(prometheus, 'up{job="kiln"}')] == ["1"]
        for query in dashboard_queries():
            prometheus_query(prometheus, query)


def test_compose_grafana_is_provisioned_with_the_stack_prometheus_and_the_dashboard():
    compose = yaml.safe_load((ROOT / "deploy/compose.yaml").read_text())["services"]
    datasource = yaml.safe_load((ROOT / "deploy/compose/grafana/datasource.yaml").read_text())
    assert datasource["datasources"][0]["url"] == "http://prometheus:9090"
    assert "prometheus" in compose and "9090" in compose["prometheus"]["ports"][0]
    provider = yaml.safe_load((ROOT / "deploy/compose/grafana/dashboards.yaml").read_text())
    folder = provider["providers"][0]["options"]["path"]
    mounts = dict(volume.rsplit(":", 1)[0].split(":") for volume in compose["grafana"]["volumes"])
    assert mounts["./grafana/kiln-dashboard.json"].startswith(folder + "/")
    assert (ROOT / "deploy/grafana/kiln-dashboard.json").exists()
    subprocess.run(["docker-compose", "--file", str(ROOT / "deploy/compose.yaml"), "config",
                    "--quiet"], check=True, timeout=60)


def replica_answers(compose, service):
    """Requests the replica `service` has answered, from its own /metrics."""
    address = published(compose("ps", "--quiet", service), 8000)
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        metrics = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
               if line.startswith("kiln_request_success_total{") and 'model="lenet-fashion"' in line)


def test_three_replicas_behind_nginx_keep_answering_when_one_stops_and_one_is_killed():
    compose_file = ROOT / "deploy/scale-out/compose.yaml"
    ports = {"KILN_HTTP_PORT": free_port(), "KILN_GRPC_PORT": free_port()}
    http = f"127.0.0.1:{ports['KILN_HTTP_PORT']}"
    grpc_address = f"127.0.0.1:{ports['KILN_GRPC_PORT']}"
    callers = 8
    with stack(compose_file, **ports) as compose:
        wait_for(f"http://{http}/v2/health/ready")
        # KServe's own Open Inference Protocol stubs, through nginx's gRPC balancing.
        client = GRPCInferenceServiceStub(grpc.insecure_channel(grpc_address))
        assert client.ServerReady(v2.ServerReadyRequest(), timeout=10).ready
        assert client.ModelReady(v2.ModelReadyRequest(name="lenet-fashion"), timeout=10).ready

        with ClassifyLoad(http, callers) as load:
            time.sleep(4)
            served = {s: replica_answers(compose, s) for s in ("kiln-1", "kiln-2", "kiln-3")}
            assert all(count > 0 for count in served.values()), served

            # A graceful stop: kiln-2 drains, nginx sends new requests elsewhere.
            stopping = time.monotonic()
            docker("stop", "--time", "40", compose("ps", "--quiet", "kiln-2"), timeout=120)
            time.sleep(3)
            # A crash: kiln-3's in-flight requests can be lost, no more than that.
            killed = time.monotonic()
            docker("kill", compose("ps", "--quiet", "kiln-3"))
            time.sleep(5)
            after = time.monotonic()
            time.sleep(3)

        assert load.failures(stopping, killed) == []
        assert len(load.failures(killed)) <= callers, load.failures(killed)
        # One replica left, and the service answers everything sent to it.
        assert load.failures(after) == [] and load.answered(after) > 0
        assert client.ServerReady(v2.ServerReadyRequest(), timeout=10).ready
