"""Strimzi KafkaTopic resources generated from the topic catalogue (`python -m pim_hub.ops.topics_export`)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import yaml

from pim_hub.runtime.kafka import profile_catalogue, profile_replication
from pim_hub.runtime.settings import Settings

#: The header of the generated file: it must never be edited by hand.
HEADER = "# Generated from the topic catalogue (src/pim_hub/schemas/topics.py) by pim_hub.ops.topics_export.\n"


def kafka_topics(
    settings: Settings,
    *,
    profile: str = "production",
    cluster: str = "pim-hub",
    namespace: str | None = None,
) -> list[dict[str, Any]]:
    """One `kafka.strimzi.io/v1beta2` KafkaTopic per catalogue topic, with the profile applied.

    Args:
        settings: partitions, retention and retry tiers of the deployment.
        profile: topic profile (replication and cluster-wide configs), as `hub topics apply`.
        cluster: the Strimzi Kafka cluster (label `strimzi.io/cluster`) owning the topics.
        namespace: where the resources go; None leaves it to Kustomize.

    Returns:
        KafkaTopic resources in catalogue order.
    """
    replicas = profile_replication(settings, profile)
    resources = []
    for spec in profile_catalogue(settings, profile):
        metadata: dict[str, Any] = {
            # Topic names are valid DNS subdomains ('.', '-', lowercase), so they serve as
            # resource names; spec.topicName still states the Kafka name explicitly.
            "name": spec.name,
            "labels": {"strimzi.io/cluster": cluster, "app.kubernetes.io/part-of": "pim-hub"},
            "annotations": {"pim-hub/doc": spec.doc},
        }
        if namespace:
            metadata["namespace"] = namespace
        resources.append(
            {
                "apiVersion": "kafka.strimzi.io/v1beta2",
                "kind": "KafkaTopic",
                "metadata": metadata,
                "spec": {
                    "topicName": spec.name,
                    "partitions": spec.partitions,
                    "replicas": replicas,
                    "config": dict(sorted(spec.configs().items())),
                },
            }
        )
    return resources


def render(resources: list[dict[str, Any]]) -> str:
    """A multi-document YAML file with the generated header."""
    body = yaml.safe_dump_all(resources, sort_keys=False, default_flow_style=False)
    return HEADER + "---\n" + body


def main(argv: list[str] | None = None) -> int:
    """Print (or write) the KafkaTopic resources of this deployment's settings (HUB_* env)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--profile", default="production")
    parser.add_argument("--cluster", default="pim-hub", help="Strimzi Kafka cluster name")
    parser.add_argument("--namespace", default=None)
    parser.add_argument("--output", "-o", default="-", help="file to write; - for stdout")
    args = parser.parse_args(argv)
    text = render(
        kafka_topics(
            Settings(), profile=args.profile, cluster=args.cluster, namespace=args.namespace
        )
    )
    if args.output == "-":
        sys.stdout.write(text)
    else:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(text)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
