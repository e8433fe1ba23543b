"""A strict, hand-written subset of the Karpenter v1 CRD schemas, for the fields this platform sets.

kubernetes-validate bundles only built-in kinds, and the Karpenter CRDs cannot be fetched offline. This subset,
written from Karpenter's v1 API reference, rejects unknown or misplaced fields and wrong enum values the way the
API server's structural schema would. Fields the platform does not use are absent on purpose: using a new one means
adding it here after checking the reference.
"""

from __future__ import annotations

STRICT = {"additionalProperties": False}


def obj(properties: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "properties": properties, "required": list(required), **STRICT}


STRING = {"type": "string"}
STRING_MAP = {"type": "object", "additionalProperties": STRING}
DURATION = {"type": "string", "pattern": r"^(([0-9]+(s|m|h))+|Never)$"}
QUANTITY = {"type": ["string", "integer"]}
METADATA = obj({"name": STRING, "labels": STRING_MAP, "annotations": STRING_MAP}, ("name",))
TAINT = obj({"key": STRING, "value": STRING, "effect": {"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]}},
            ("key", "effect"))
REQUIREMENT = obj({"key": STRING, "operator": {"enum": ["In", "NotIn", "Exists", "DoesNotExist", "Gt", "Lt"]},
                   "values": {"type": "array", "items": STRING}, "minValues": {"type": "integer"}},
                  ("key", "operator"))
SELECTOR_TERM = obj({"tags": STRING_MAP, "id": STRING, "name": STRING})

NODE_POOL = obj({
    "apiVersion": {"const": "karpenter.sh/v1"},
    "kind": {"const": "NodePool"},
    "metadata": METADATA,
    "spec": obj({
        "template": obj({
            "metadata": obj({"labels": STRING_MAP, "annotations": STRING_MAP}),
            "spec": obj({
                "nodeClassRef": obj({"group": {"const": "karpenter.k8s.aws"}, "kind": {"const": "EC2NodeClass"},
                                     "name": STRING}, ("group", "kind", "name")),
                "requirements": {"type": "array", "items": REQUIREMENT},
                "taints": {"type": "array", "items": TAINT},
                "startupTaints": {"type": "array", "items": TAINT},
                "expireAfter": DURATION,
                "terminationGracePeriod": DURATION,
            }, ("nodeClassRef", "requirements")),
        }, ("spec",)),
        "limits": {"type": "object", "additionalProperties": QUANTITY},
        "disruption": obj({
            "consolidationPolicy": {"enum": ["WhenEmpty", "WhenEmptyOrUnderutilized"]},
            "consolidateAfter": DURATION,
            "budgets": {"type": "array", "items": obj({"nodes": STRING, "schedule": STRING, "duration": DURATION},
                                                       ("nodes",))},
        }, ("consolidateAfter",)),
        "weight": {"type": "integer", "minimum": 1, "maximum": 100},
    }, ("template",)),
}, ("apiVersion", "kind", "metadata", "spec"))

EC2_NODE_CLASS = obj({
    "apiVersion": {"const": "karpenter.k8s.aws/v1"},
    "kind": {"const": "EC2NodeClass"},
    "metadata": METADATA,
    "spec": obj({
        "role": STRING,
        "instanceProfile": STRING,
        "amiSelectorTerms": {"type": "array", "minItems": 1, "items": obj({
            "alias": {"type": "string", "pattern": r"^[a-z0-9]+@(latest|v\d{8})$", "maxLength": 30},
            "id": STRING, "name": STRING, "owner": STRING, "tags": STRING_MAP})},
        "subnetSelectorTerms": {"type": "array", "minItems": 1, "items": SELECTOR_TERM},
        "securityGroupSelectorTerms": {"type": "array", "minItems": 1, "items": SELECTOR_TERM},
        "metadataOptions": obj({
            "httpEndpoint": {"enum": ["enabled", "disabled"]},
            "httpProtocolIPv6": {"enum": ["enabled", "disabled"]},
            "httpPutResponseHopLimit": {"type": "integer", "minimum": 1, "maximum": 64},
            "httpTokens": {"enum": ["required", "optional"]},
        }),
        "blockDeviceMappings": {"type": "array", "items": obj({
            "deviceName": STRING, "rootVolume": {"type": "boolean"},
            "ebs": obj({"volumeSize": {"type": "string", "pattern": r"^\d+(Gi|Ti|G|T)$"},
                        "volumeType": {"enum": ["standard", "io1", "io2", "gp2", "sc1", "st1", "gp3"]},
                        "encrypted": {"type": "boolean"}, "kmsKeyID": STRING,
                        "deleteOnTermination": {"type": "boolean"}, "iops": {"type": "integer"},
                        "throughput": {"type": "integer"}, "snapshotID": STRING}),
        })},
        "tags": STRING_MAP,
    }, ("amiSelectorTerms", "subnetSelectorTerms", "securityGroupSelectorTerms")),
}, ("apiVersion", "kind", "metadata", "spec"))

SCHEMAS = {("karpenter.sh/v1", "NodePool"): NODE_POOL, ("karpenter.k8s.aws/v1", "EC2NodeClass"): EC2_NODE_CLASS}
