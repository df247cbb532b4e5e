"""deploy/kubernetes validated offline: the Kubernetes objects against the API schemas of
Kubernetes 1.37 (kubernetes-validate, strict: unknown fields are errors), KServe's
objects against the types of KServe's own SDK, the PodMonitor against the Prometheus
Operator's API; then the links between them, and the probes against a running container."""

import copy
import re
import urllib.request
from pathlib import Path

import kserve.models as kserve_models
import kubernetes.client.models as k8s_models
import kubernetes_validate
import pytest
import yaml

from conftest import ROOT, kiln_container

MANIFESTS = ROOT / "deploy/kubernetes"
KUBERNETES_VERSION = "1.37.0"

# monitoring.coreos.com/v1 PodMonitor, as far as these manifests use it (field names and
# types from the Prometheus Operator's API reference).
PROMETHEUS_OPERATOR_TYPES = {
    "PodMonitor": {"apiVersion": "str", "kind": "str", "metadata": "V1ObjectMeta",
                   "spec": "PodMonitorSpec"},
    "PodMonitorSpec": {"selector": "V1LabelSelector", "namespaceSelector": "NamespaceSelector",
                       "podMetricsEndpoints": "list[PodMetricsEndpoint]", "jobLabel": "str",
                       "podTargetLabels": "list[str]", "sampleLimit": "int"},
    "NamespaceSelector": {"any": "bool", "matchNames": "list[str]"},
    "PodMetricsEndpoint": {"port": "str", "portNumber": "int", "path": "str", "scheme": "str",
                           "interval": "Duration", "scrapeTimeout": "Duration",
                           "honorLabels": "bool", "params": "dict(str, list[str])"},
}
PROMETHEUS_DURATION = re.compile(r"^(\d+(ms|s|m|h|d|w|y))+$")


def documents(path):
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def manifest(kind):
    found = [doc for path in sorted(MANIFESTS.glob("*.yaml")) for doc in documents(path)
             if doc["kind"] == kind]
    assert len(found) == 1, f"{len(found)} {kind} manifests"
    return found[0]


def fields_of(type_name):
    if type_name in PROMETHEUS_OPERATOR_TYPES:
        return PROMETHEUS_OPERATOR_TYPES[type_name]
    model = getattr(kserve_models, type_name, None) or getattr(k8s_models, type_name)
    return {model.attribute_map[name]: kind for name, kind in model.openapi_types.items()}


def type_errors(value, type_name, where):
    """Every field of `value` that `type_name` does not have, or has with another type."""
    # The SDKs spell containers both ways: list[X] / dict(str, X) and List[X] / Dict[str, X].
    if type_name.lower().startswith("list["):
        if not isinstance(value, list):
            return [f"{where}: expected a list"]
        return [e for i, item in enumerate(value) for e in type_errors(item, type_name[5:-1],
                                                                      f"{where}[{i}]")]
    if type_name.lower().startswith(("dict(", "dict[")):
        if not isinstance(value, dict):
            return [f"{where}: expected a mapping"]
        inner = type_name[type_name.index(",") + 1:-1].strip()
        return [e for key, item in value.items() for e in type_errors(item, inner, f"{where}.{key}")]
    if type_name == "object":
        return []
    if type_name == "Duration":
        ok = isinstance(value, str) and PROMETHEUS_DURATION.match(value)
        return [] if ok else [f"{where}: {value!r} is not a Prometheus duration"]
    primitive = {"str": str, "int": int, "bool": bool, "float": (int, float)}.get(type_name)
    if primitive:
        ok = isinstance(value, primitive) and (type_name == "bool" or not isinstance(value, bool))
        return [] if ok else [f"{where}: {value!r} is not {type_name}"]
    if not isinstance(value, dict):
        return [f"{where}: expected a {type_name} mapping"]
    fields = fields_of(type_name)
    errors = []
    for key, item in value.items():
        if key not in fields:
            errors.append(f"{where}.{key}: {type_name} has no such field")
        else:
            errors += type_errors(item, fields[key], f"{where}.{key}")
    return errors


CUSTOM_RESOURCES = {
    ("serving.kserve.io/v1beta1", "InferenceService"): "V1beta1InferenceService",
    ("serving.kserve.io/v1alpha1", "ServingRuntime"): "V1alpha1ServingRuntime",
    ("monitoring.coreos.com/v1", "PodMonitor"): "PodMonitor",
}


def validation_errors(doc):
    custom = CUSTOM_RESOURCES.get((doc["apiVersion"], doc["kind"]))
    if custom:
        return type_errors(doc, custom, doc["kind"])
    try:
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        return []
    except kubernetes_validate.ValidationError as error:
        return [str(error)]


ALL = [(path.name, doc) for path in sorted(MANIFESTS.glob("*.yaml")) for doc in documents(path)]


@pytest.mark.parametrize("name,doc", ALL, ids=[f"{n}:{d['kind']}" for n, d in ALL])
def test_every_manifest_validates(name, doc):
    assert validation_errors(doc) == []


def test_every_kind_is_there():
    kinds = {doc["kind"] for _, doc in ALL}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodMonitor",
                     "ConfigMap", "ServingRuntime", "InferenceService"}


@pytest.mark.parametrize("kind,path", [
    ("Deployment", ["spec", "template", "spec", "containers", 0]),
    ("Service", ["spec", "ports", 0]),
    ("HorizontalPodAutoscaler", ["spec", "metrics", 0, "pods"]),
    ("PodMonitor", ["spec", "podMetricsEndpoints", 0]),
    ("ServingRuntime", ["spec", "containers", 0]),
    ("InferenceService", ["spec", "predictor", "model"]),
])
def test_a_misspelt_field_is_caught(kind, path):
    doc = copy.deepcopy(manifest(kind))
    target = doc
    for step in path:
        target = target[step]
    target["namee"] = "kiln"
    assert validation_errors(doc) != []


def env_of(container):
    return {item["name"]: item["value"] for item in container.get("env", [])}


def test_termination_grace_covers_the_pre_stop_pause_and_the_drain():
    pod = manifest("Deployment")["spec"]["template"]["spec"]
    container = pod["containers"][0]
    drain = int(env_of(container)["KILN_DRAIN_TIMEOUT_SECS"])
    pause = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pod["terminationGracePeriodSeconds"] > pause + drain


def test_service_probes_and_monitor_name_ports_the_container_has():
    container = manifest("Deployment")["spec"]["template"]["spec"]["containers"][0]
    ports = {port["name"] for port in container["ports"]}
    assert {port["targetPort"] for port in manifest("Service")["spec"]["ports"]} == ports
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"]["port"] in ports
    assert manifest("PodMonitor")["spec"]["podMetricsEndpoints"][0]["port"] in ports
    labels = manifest("Deployment")["spec"]["template"]["metadata"]["labels"]
    for selector in (manifest("Service")["spec"]["selector"],
                     manifest("PodMonitor")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()


def test_autoscaler_metric_is_one_kiln_exports_and_the_adapter_serves():
    name = manifest("HorizontalPodAutoscaler")["spec"]["metrics"][0]["pods"]["metric"]["name"]
    rules = yaml.safe_load(manifest("ConfigMap")["data"]["config.yaml"])["rules"]
    assert [rule["name"]["as"] for rule in rules] == [name]
    metrics_code = "".join(f.read_text() for f in (ROOT / "server/src/metrics").glob("*.rs"))
    assert f'"{name}"' in metrics_code


def test_kserve_runtime_serves_the_inference_service_on_its_port():
    runtime, service = manifest("ServingRuntime"), manifest("InferenceService")
    model = service["spec"]["predictor"]["model"]
    assert model["runtime"] == runtime["metadata"]["name"]
    assert model["modelFormat"]["name"] in [f["name"] for f in runtime["spec"]["supportedModelFormats"]]
    assert model["protocolVersion"] in runtime["spec"]["protocolVersions"]
    container = runtime["spec"]["containers"][0]
    http_port = int(env_of(container)["KILN_HTTP_ADDR"].rsplit(":", 1)[1])
    assert [port["containerPort"] for port in container["ports"]] == [http_port]


def test_the_probe_routes_answer_in_the_image():
    container = manifest("Deployment")["spec"]["template"]["spec"]["containers"][0]
    with kiln_container() as (_, http):
        for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
            path = container[probe]["httpGet"]["path"]
            with urllib.request.urlopen(f"http://{http}{path}", timeout=10) as response:
                assert response.status == 200, path


def test_the_kserve_runtime_container_serves_a_repository_at_mnt_models():
    container = manifest("ServingRuntime")["spec"]["containers"][0]
    env = [arg for name, value in env_of(container).items() for arg in ("--env", f"{name}={value}")]
    http_port = container["ports"][0]["containerPort"]
    # What KServe's storage initializer would have put there: a Kiln model repository.
    mount = ["--volume", f"{ROOT / 'models'}:/mnt/models:ro"]
    with kiln_container(*env, *mount, args=container["args"], http_port=http_port) as (_, http):
        with urllib.request.urlopen(f"http://{http}/v2/models/lenet-fashion/ready", timeout=10) as r:
            assert r.status == 200
