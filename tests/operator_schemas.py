"""Strict, hand-written subsets of the Strimzi v1 and Prometheus Operator v1 CRD schemas, for the fields we set.

Like tests/karpenter_schema.py: kubernetes-validate has only built-in kinds and the CRDs cannot be fetched offline.
Written from Strimzi's 1.x API reference (kafka.strimzi.io/v1) and the prometheus-operator API reference; unknown
or misplaced fields and wrong enum values are rejected as the API server's structural schemas would.
"""

from __future__ import annotations

from tests.karpenter_schema import STRING, STRING_MAP, obj

INT = {"type": "integer"}
BOOL = {"type": "boolean"}
NAMESPACED = obj({"name": STRING, "namespace": STRING, "labels": STRING_MAP, "annotations": STRING_MAP},
                 ("name", "namespace"))
CLUSTER_BOUND = obj({"name": STRING, "namespace": STRING, "annotations": STRING_MAP,
                     "labels": {"type": "object", "properties": {"strimzi.io/cluster": STRING},
                                "required": ["strimzi.io/cluster"], "additionalProperties": STRING}},
                    ("name", "namespace", "labels"))
QUANTITY_MAP = {"type": "object", "additionalProperties": {"type": ["string", "integer"]}}
RESOURCES = obj({"requests": QUANTITY_MAP, "limits": QUANTITY_MAP})
CONFIG_MAP = {"type": "object", "additionalProperties": {"type": ["string", "integer", "boolean", "number"]}}


def cr(api: str, kind: str, spec: dict, metadata: dict = NAMESPACED) -> dict:
    return obj({"apiVersion": {"const": api}, "kind": {"const": kind}, "metadata": metadata, "spec": spec},
               ("apiVersion", "kind", "metadata", "spec"))


STRIMZI = "kafka.strimzi.io/v1"
LISTENER = obj({"name": {"type": "string", "pattern": "^[a-z0-9]{1,11}$"}, "port": {"type": "integer", "minimum": 9092},
                "type": {"enum": ["internal", "route", "loadbalancer", "nodeport", "ingress", "cluster-ip"]},
                "tls": BOOL, "authentication": obj({"type": {"enum": ["tls", "scram-sha-512", "oauth", "custom"]}},
                                                   ("type",))}, ("name", "port", "type", "tls"))
KAFKA = cr(STRIMZI, "Kafka", obj({
    "kafka": obj({
        "version": STRING, "metadataVersion": STRING, "listeners": {"type": "array", "items": LISTENER, "minItems": 1},
        "authorization": obj({"type": {"enum": ["simple", "opa", "keycloak", "custom"]}}, ("type",)),
        "rack": obj({"topologyKey": STRING}, ("topologyKey",)),
        "config": CONFIG_MAP,
        "metricsConfig": obj({"type": {"enum": ["jmxPrometheusExporter", "strimziMetricsReporter"]},
                              "valueFrom": obj({"configMapKeyRef": obj({"name": STRING, "key": STRING},
                                                                       ("name", "key"))})}, ("type",)),
    }, ("listeners",)),
    "entityOperator": obj({"topicOperator": obj({"resources": RESOURCES}),
                           "userOperator": obj({"resources": RESOURCES})}),
    "kafkaExporter": obj({"topicRegex": STRING, "groupRegex": STRING, "resources": RESOURCES}),
}, ("kafka",)))
NODE_POOL = cr(STRIMZI, "KafkaNodePool", obj({
    "replicas": {"type": "integer", "minimum": 0},
    "roles": {"type": "array", "items": {"enum": ["controller", "broker"]}, "minItems": 1},
    "storage": obj({"type": {"enum": ["jbod", "ephemeral", "persistent-claim"]}, "volumes": {"type": "array", "items": obj({
        "id": INT, "type": {"enum": ["persistent-claim", "ephemeral"]}, "size": STRING, "class": STRING,
        "kraftMetadata": {"enum": ["shared"]}, "deleteClaim": BOOL}, ("type",))}}, ("type",)),
    "resources": RESOURCES,
    "template": obj({"pod": obj({"topologySpreadConstraints": {"type": "array", "items": obj({
        "maxSkew": {"type": "integer", "minimum": 1}, "topologyKey": STRING,
        "whenUnsatisfiable": {"enum": ["DoNotSchedule", "ScheduleAnyway"]},
        "labelSelector": obj({"matchLabels": STRING_MAP})}, ("maxSkew", "topologyKey", "whenUnsatisfiable"))}})}),
}, ("replicas", "roles", "storage")), CLUSTER_BOUND)
TOPIC = cr(STRIMZI, "KafkaTopic", obj({"partitions": {"type": "integer", "minimum": 1},
                                       "replicas": {"type": "integer", "minimum": 1, "maximum": 32767},
                                       "config": CONFIG_MAP}), CLUSTER_BOUND)
ACL = obj({"resource": obj({"type": {"enum": ["topic", "group", "cluster", "transactionalId"]}, "name": STRING,
                            "patternType": {"enum": ["literal", "prefix"]}}, ("type",)),
           "operations": {"type": "array", "minItems": 1, "items": {"enum": [
               "Read", "Write", "Create", "Delete", "Alter", "Describe", "ClusterAction", "AlterConfigs",
               "DescribeConfigs", "IdempotentWrite", "All"]}},
           "host": STRING}, ("resource", "operations"))
USER = cr(STRIMZI, "KafkaUser", obj({
    "authentication": obj({"type": {"enum": ["tls", "tls-external", "scram-sha-512"]}}, ("type",)),
    "authorization": obj({"type": {"const": "simple"}, "acls": {"type": "array", "items": ACL}}, ("type", "acls")),
}), CLUSTER_BOUND)

MONITORING = "monitoring.coreos.com/v1"
LABEL_SELECTOR = obj({"matchLabels": STRING_MAP, "matchExpressions": {"type": "array", "items": obj({
    "key": STRING, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist"]},
    "values": {"type": "array", "items": STRING}}, ("key", "operator"))}})
DURATION = {"type": "string", "pattern": r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?"
                                         r"(([0-9]+)s)?(([0-9]+)ms)?)$"}
ENDPOINT = obj({"port": STRING, "path": STRING, "interval": DURATION, "scrapeTimeout": DURATION})
SERVICE_MONITOR = cr(MONITORING, "ServiceMonitor", obj({
    "selector": LABEL_SELECTOR, "endpoints": {"type": "array", "items": ENDPOINT, "minItems": 1},
    "namespaceSelector": obj({"matchNames": {"type": "array", "items": STRING}, "any": BOOL}),
}, ("selector", "endpoints")))
POD_MONITOR = cr(MONITORING, "PodMonitor", obj({
    "selector": LABEL_SELECTOR, "podMetricsEndpoints": {"type": "array", "items": ENDPOINT, "minItems": 1},
    "namespaceSelector": obj({"matchNames": {"type": "array", "items": STRING}, "any": BOOL}),
}, ("selector", "podMetricsEndpoints")))
RULE = {"oneOf": [
    obj({"record": STRING, "expr": STRING, "labels": STRING_MAP}, ("record", "expr")),
    obj({"alert": STRING, "expr": STRING, "for": DURATION, "labels": STRING_MAP, "annotations": STRING_MAP},
        ("alert", "expr")),
]}
PROMETHEUS_RULE = cr(MONITORING, "PrometheusRule", obj({"groups": {"type": "array", "items": obj({
    "name": STRING, "interval": DURATION, "rules": {"type": "array", "items": RULE}}, ("name", "rules"))}}))

SCHEMAS = {(s["properties"]["apiVersion"]["const"], s["properties"]["kind"]["const"]): s
           for s in (KAFKA, NODE_POOL, TOPIC, USER, SERVICE_MONITOR, POD_MONITOR, PROMETHEUS_RULE)}
