"""A small Kustomize renderer for the features infra/k8s uses; anything else is an error."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import yaml

SUPPORTED = {
    "apiVersion",
    "kind",
    "resources",
    "namespace",
    "labels",
    "images",
    "replicas",
    "patches",
}
#: Kinds that are not namespaced (Kustomize leaves their namespace alone).
CLUSTER_SCOPED = {"Namespace", "CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"}


class KustomizeError(Exception):
    """The kustomization uses something this renderer does not implement."""


def build(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization directory like `kustomize build` would, for the supported fields."""
    kfile = directory / "kustomization.yaml"
    spec = yaml.safe_load(kfile.read_text())
    unknown = set(spec) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{kfile}: unsupported fields {sorted(unknown)}")
    resources: list[dict[str, Any]] = []
    for entry in spec.get("resources", []):
        path = (directory / entry).resolve()
        if path.is_dir():
            resources += build(path)
        else:
            resources += [d for d in yaml.safe_load_all(path.read_text()) if d]
    _check_unique(resources, kfile)
    for label in spec.get("labels", []):
        if label.get("includeSelectors"):
            raise KustomizeError("labels with includeSelectors are not supported")
        for res in resources:
            res.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
    for patch in spec.get("patches", []):
        _apply_patch(resources, patch, directory)
    for rep in spec.get("replicas", []):
        matched = [
            r for r in resources if r["metadata"]["name"] == rep["name"] and "replicas" in r["spec"]
        ]
        if not matched:
            raise KustomizeError(f"replicas: nothing named {rep['name']}")
        for res in matched:
            res["spec"]["replicas"] = rep["count"]
    for image in spec.get("images", []):
        _set_image(resources, image)
    if "namespace" in spec:
        for res in resources:
            if res["kind"] not in CLUSTER_SCOPED:
                res["metadata"]["namespace"] = spec["namespace"]
    return resources


def _check_unique(resources: list[dict[str, Any]], where: Path) -> None:
    seen: set[tuple[str, str]] = set()
    for res in resources:
        ident = (res["kind"], res["metadata"]["name"])
        if ident in seen:
            raise KustomizeError(f"{where}: {ident} defined twice")
        seen.add(ident)


def _apply_patch(resources: list[dict[str, Any]], patch: dict[str, Any], base: Path) -> None:
    target = patch.get("target") or {}
    if set(target) - {"kind", "name"}:
        raise KustomizeError(f"patch target fields {sorted(target)} not supported")
    text = patch["patch"] if "patch" in patch else (base / patch["path"]).read_text()
    ops = yaml.safe_load(text)
    if not isinstance(ops, list):
        raise KustomizeError("only JSON 6902 patches (a list of operations) are supported")
    # Kustomize anchors the name as a regular expression.
    name_re = re.compile(f"^(?:{target['name']})$") if "name" in target else None
    matched = [
        r
        for r in resources
        if ("kind" not in target or r["kind"] == target["kind"])
        and (name_re is None or name_re.match(r["metadata"]["name"]))
    ]
    if not matched:
        raise KustomizeError(f"patch target {target} matches nothing")
    for res in matched:
        for op in ops:
            _json_patch(res, op)


def _pointer(path: str) -> list[str]:
    return [p.replace("~1", "/").replace("~0", "~") for p in path.lstrip("/").split("/")]


def _json_patch(doc: dict[str, Any], op: dict[str, Any]) -> None:
    parts = _pointer(op["path"])
    parent: Any = doc
    for part in parts[:-1]:
        parent = parent[int(part)] if isinstance(parent, list) else parent[part]
    last = parts[-1]
    value = copy.deepcopy(op.get("value"))
    if op["op"] == "add":
        if isinstance(parent, list):
            parent.insert(len(parent) if last == "-" else int(last), value)
        else:
            parent[last] = value
    elif op["op"] == "replace":
        if isinstance(parent, list):
            parent[int(last)] = value
        elif last not in parent:
            raise KustomizeError(f"replace of missing {op['path']}")
        else:
            parent[last] = value
    elif op["op"] == "remove":
        del parent[int(last) if isinstance(parent, list) else last]
    else:
        raise KustomizeError(f"patch op {op['op']} not supported")


def pod_specs(res: dict[str, Any]) -> list[dict[str, Any]]:
    """The pod specs inside a workload resource."""
    if res["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return [res["spec"]["template"]["spec"]]
    if res["kind"] == "CronJob":
        return [res["spec"]["jobTemplate"]["spec"]["template"]["spec"]]
    return []


def _set_image(resources: list[dict[str, Any]], image: dict[str, Any]) -> None:
    for res in resources:
        for pod in pod_specs(res):
            for c in [*pod.get("containers", []), *pod.get("initContainers", [])]:
                name = c["image"].split(":")[0]
                if name == image["name"]:
                    c["image"] = f"{image.get('newName', name)}:{image['newTag']}"
