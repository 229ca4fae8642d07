"""The official Python client against skiff: CRUD, list, watch and patch.

Usage: python3 crud.py KUBECONFIG. Exits non-zero (with a traceback) on any failure.
"""
import sys
import threading

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

config.load_kube_config(config_file=sys.argv[1])
core = client.CoreV1Api()
ns = "default"

body = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="py-cm", labels={"from": "python"}), data={"a": "1"})
created = core.create_namespaced_config_map(ns, body)
assert created.metadata.uid, created
assert core.read_namespaced_config_map("py-cm", ns).data == {"a": "1"}

listed = core.list_namespaced_config_map(ns, label_selector="from=python")
assert [i.metadata.name for i in listed.items] == ["py-cm"], listed
start = listed.metadata.resource_version

patched = core.patch_namespaced_config_map("py-cm", ns, {"data": {"b": "2"}})
assert patched.data == {"a": "1", "b": "2"}, patched.data

current = core.read_namespaced_config_map("py-cm", ns)
current.data["c"] = "3"
replaced = core.replace_namespaced_config_map("py-cm", ns, current)
assert replaced.data["c"] == "3"

try:
    core.replace_namespaced_config_map("py-cm", ns, current)
    raise AssertionError("a stale resourceVersion must conflict")
except ApiException as e:
    assert e.status == 409, e

events = []
w = watch.Watch()
for event in w.stream(core.list_namespaced_config_map, ns, resource_version=start, label_selector="from=python", timeout_seconds=5):
    events.append(event["type"])
    if len(events) == 2:
        w.stop()
assert events == ["MODIFIED", "MODIFIED"], events

core.delete_namespaced_config_map("py-cm", ns)
try:
    core.read_namespaced_config_map("py-cm", ns)
    raise AssertionError("deleted object must be gone")
except ApiException as e:
    assert e.status == 404, e
print("python client: ok")
