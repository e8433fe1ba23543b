"""The destroy referee: what `pulumi destroy` does to a stack, and what it leaves behind in the account.

`python -m offline.destroy --stack <dev|staging|prod> [--order]` prints the verdict.

The engine half: a destroy with any protected resource is refused at preview ("it will be an error to do a Pulumi
deployment which tries to delete a protected resource for any reason", pulumi.com/docs/iac/concepts/options/protect),
so nothing is deleted. Otherwise every resource is deleted after everything that needs it (dependsOn, provider,
parent), which is the explicit order computed here; a `retainOnDelete` resource only leaves the state ("the
providers Delete method will not be called", pulumi/resource.py). The first failed delete stops the destroy; what
comes after it in the order stays (the engine's default, without --continue-on-error).

The AWS half, at delete time: which deletes fail, what data a delete destroys, and what data outlives the stack and
under which key. The one rule every stack must keep: no data outlives the key that encrypts it.

Deliberately not modelled: anything a controller creates outside the plan besides EBS volumes (Karpenter's nodes, load
balancers, log groups AWS creates itself), RDS automated backups (deleted with the instance by default), the EKS
cluster's own secrets, and time: a failure stops everything after it in the order, where the real engine lets
deletes already in flight finish.
"""

from __future__ import annotations

import argparse
import heapq
import sys
from dataclasses import dataclass, field
from typing import Any

from offline.harness import OWN_NAME_INPUTS, STACKS, Plan, run_program

BUCKET = "aws:s3/bucket:Bucket"
SSE = "aws:s3/bucketServerSideEncryptionConfiguration:BucketServerSideEncryptionConfiguration"
RDS, EKS, KEY, MSK = ("aws:rds/instance:Instance", "aws:eks/cluster:Cluster", "aws:kms/key:Key",
                      "aws:msk/cluster:Cluster")
STATEFUL_SET, NODE_POOL = "kubernetes:apps/v1:StatefulSet", "kubernetes:kafka.strimzi.io/v1:KafkaNodePool"
NAMESPACE, STORAGE_CLASS = "kubernetes:core/v1:Namespace", "kubernetes:storage.k8s.io/v1:StorageClass"
# Keys AWS owns are never scheduled for deletion by anyone's destroy.
AWS_MANAGED = {"s3": "SSE-S3 (S3-managed key)", "aws/s3": "aws/s3 (AWS-managed)", "rds": "aws/rds (AWS-managed)",
               "msk": "aws/msk (AWS-managed)", "ebs": "aws/ebs (AWS-managed)"}
UNENCRYPTED = "unencrypted"


def short(urn: str) -> str:
    """`Type name` (`Bucket data-lake-raw`): unique within these plans, and readable."""
    _, _, qualified_type, name = urn.split("::", 3)
    return f"{qualified_type.rsplit(':', 1)[-1]} {name}"


@dataclass(frozen=True)
class Survivor:
    """Data left in the account after the destroy, and whether the key it is encrypted under is left too."""
    urn: str
    what: str
    key: str
    key_survives: bool

    def __str__(self) -> str:
        fate = "survives" if self.key_survives else "is DELETED (scheduled): the data becomes unreadable"
        return f"{self.what}: key {self.key} {fate}"


@dataclass
class Destroy:
    stack: str
    order: list[str]
    refused: bool = False
    why: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    retained: list[str] = field(default_factory=list)
    failed_at: str | None = None
    error: str | None = None
    not_reached: list[str] = field(default_factory=list)
    survivors: list[Survivor] = field(default_factory=list)
    lost: list[str] = field(default_factory=list)
    """Data the destroy deletes, and keys it schedules for deletion."""
    notes: list[str] = field(default_factory=list)
    blocks_rebuild: list[str] = field(default_factory=list)
    """Retained resources whose fixed name the next `pulumi up` of the stack would create again (and be refused)."""

    @property
    def unreadable(self) -> list[Survivor]:
        return [s for s in self.survivors if not s.key_survives]

    def summary(self) -> str:
        if self.refused:
            head = (f"destroy {self.stack}: REFUSED at preview, nothing is deleted: {len(self.why)} protected "
                    f"resources ({', '.join(map(short, self.why[:4]))}{', ...' if len(self.why) > 4 else ''})")
        elif self.failed_at:
            head = (f"destroy {self.stack}: FAILS at {short(self.failed_at)} ({self.error}) after {len(self.deleted)} "
                    f"deletes and {len(self.retained)} retained; {len(self.not_reached)} resources not reached")
        else:
            head = (f"destroy {self.stack}: runs to the end: {len(self.deleted)} deleted, {len(self.retained)} "
                    "retained (left in the account, out of the state)")
        lines = [head]
        lines += [f"  deletes: {item}" for item in self.lost]
        lines += [f"  leaves:  {s}" for s in self.survivors]
        lines += [f"  note:    {note}" for note in self.notes]
        lines += [f"  blocks:  {item}" for item in self.blocks_rebuild]
        verdict = ("every piece of data left keeps its key" if not self.unreadable else
                   f"{len(self.unreadable)} pieces of data outlive their key")
        return "\n".join([*lines, f"  verdict: {verdict}"])


def _prerequisites(plan: Plan) -> dict[str, set[str]]:
    """What each resource needs: the engine deletes a resource only after everything that needs it is gone."""
    return {r["urn"]: {u for u in (*r["dependsOn"], r["provider"], r["parent"]) if u in plan.by_urn}
            for r in plan.resources}


def deletion_order(plan: Plan, last: frozenset[str] = frozenset()) -> list[str]:
    """A topological order of the reverse dependency graph. Among resources that may go next, those in `last` wait:
    the engine deletes in parallel, so by the time a doomed delete fails everything that could go first has gone
    (the worst case for what a failed destroy has already torn down)."""
    needs = _prerequisites(plan)
    needed_by = {urn: 0 for urn in needs}
    for prereqs in needs.values():
        for p in prereqs:
            needed_by[p] += 1
    ready = [(urn in last, urn) for urn, n in needed_by.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        _, urn = heapq.heappop(ready)
        order.append(urn)
        for p in needs[urn]:
            needed_by[p] -= 1
            if needed_by[p] == 0:
                heapq.heappush(ready, (p in last, p))
    if len(order) != len(needs):  # a cycle cannot reach the engine; say so rather than return a partial order
        raise ValueError(f"dependency cycle among {sorted(set(needs) - set(order))}")
    return order


def delete_error(resource: dict[str, Any]) -> str | None:
    """The error AWS answers to the delete call, if any (never asked for a retained resource)."""
    inputs, type_ = resource["inputs"], resource["type"]
    # pulumi_aws/s3/bucket.py force_destroy: objects are deleted "when the bucket is destroyed so that the bucket can
    # be destroyed without error". Every bucket is taken to hold data (the lake's areas, the access logs): by the
    # time anyone destroys a stack it has been used.
    if type_ == BUCKET and not inputs.get("forceDestroy"):
        return "BucketNotEmpty: forceDestroy is false and the bucket holds data"
    # pulumi_aws/rds/instance.py deletion_protection: "The database can't be deleted when this value is set to true."
    if type_ == RDS and inputs.get("deletionProtection"):
        return "deletionProtection is on: the database can't be deleted"
    # pulumi_aws/eks/cluster.py deletion_protection: "the cluster cannot be deleted unless deletion protection is
    # first disabled". Unlike Pulumi's protect it is only met at the cluster's turn, after its dependents are gone.
    if type_ == EKS and inputs.get("deletionProtection"):
        return "deletionProtection is on: the cluster cannot be deleted"
    return None


def destroy(plan: Plan) -> Destroy:
    protected = sorted(r["urn"] for r in plan.resources if r["protect"])
    failing = frozenset(r["urn"] for r in plan.resources if not r["retainOnDelete"] and delete_error(r))
    result = Destroy(plan.stack, deletion_order(plan, last=failing), refused=bool(protected), why=protected)
    fate = {urn: "kept" for urn in result.order}
    if not result.refused:
        for urn in result.order:
            r = plan.by_urn[urn]
            managed = r["custom"] and not r["type"].startswith("pulumi:")  # components and providers call no API
            if result.failed_at:
                result.not_reached += [urn] if managed else []
            elif r["retainOnDelete"]:
                fate[urn] = "retained"
                result.retained += [urn] if managed else []
            elif urn in failing:
                result.failed_at, result.error = urn, delete_error(r)
            else:
                fate[urn] = "deleted"
                result.deleted += [urn] if managed else []
    _data(plan, fate, result)
    result.blocks_rebuild = _fixed_names(plan, result.retained)
    return result


def _fixed_names(plan: Plan, retained: list[str]) -> list[str]:
    """A name generated from a prefix (`bucketPrefix`) never collides; a fixed one (the inputs that are a resource's
    own name, as the harness records identities) left behind is taken when the stack is deployed again."""
    found = []
    for urn in retained:
        r = plan.by_urn[urn]
        for key in ("name", *OWN_NAME_INPUTS.get(r["type"], ())):
            if isinstance(r["inputs"].get(key), str):
                found.append(f"{short(urn)} keeps {key} {r['inputs'][key]!r}, which a new deploy of the stack "
                             "creates again and is refused (already exists)")
    return found


class _Keys:
    """Resolves what a resource names as its key to a key of the stack (by id or ARN) or an AWS-managed key."""

    def __init__(self, plan: Plan, fate: dict[str, str]):
        self.fate, self.plan = fate, plan
        self.by_identity = {i: k["urn"] for k in plan.of_type(KEY) for i in k.get("identity", [])}

    def of(self, urn: str, what: str, key: str | None, default: str) -> Survivor:
        key = key or default
        key_urn = self.by_identity.get(key)
        # pulumi_aws/kms/key.py deletion_window_in_days: "After the waiting period ends, AWS KMS deletes the KMS key",
        # and with it the only way to decrypt what it encrypted (a key pending deletion already refuses to decrypt;
        # the window is there to cancel in, not to read in).
        survives = key_urn is None or self.fate[key_urn] != "deleted"
        return Survivor(urn, what, f"{self.plan.by_urn[key_urn]['name']} ({key})" if key_urn else key, survives)


def _data(plan: Plan, fate: dict[str, str], result: Destroy) -> None:
    keys = _Keys(plan, fate)
    # Objects stay under the key they were written with; the SSE configuration is only the default for new ones,
    # so it names a bucket's key even when the destroy deletes the configuration.
    bucket_key: dict[str, str] = {}
    for config in plan.of_type(SSE):
        rule = (config["inputs"].get("rules") or [{}])[0].get("applyServerSideEncryptionByDefault") or {}
        # aws:kms without a key id means the AWS-managed aws/s3 key; AES256 is SSE-S3.
        kms = rule.get("kmsMasterKeyId") or (AWS_MANAGED["aws/s3"] if "kms" in rule.get("sseAlgorithm", "") else None)
        bucket_key[config["inputs"].get("bucket")] = kms or AWS_MANAGED["s3"]
    for r in plan.of_type(BUCKET):
        if fate[r["urn"]] == "deleted":
            result.lost.append(f"{short(r['urn'])} emptied (forceDestroy) and deleted")
        else:
            key = next((bucket_key[i] for i in r.get("identity", []) if i in bucket_key), None)
            # S3 encrypts every new object with SSE-S3 when a bucket has no default encryption of its own.
            result.survivors.append(keys.of(r["urn"], short(r["urn"]), key, AWS_MANAGED["s3"]))
    for r in plan.of_type(RDS):
        inputs = r["inputs"]
        encrypted = inputs.get("kmsKeyId") if inputs.get("storageEncrypted") else UNENCRYPTED
        if fate[r["urn"]] != "deleted":
            result.survivors.append(keys.of(r["urn"], f"RDS {short(r['urn'])}", encrypted, AWS_MANAGED["rds"]))
        elif inputs.get("skipFinalSnapshot"):
            result.lost.append(f"{short(r['urn'])} deleted without a final snapshot")
        else:
            # pulumi_aws/rds/instance.py skip_final_snapshot: "If false is specified, a DB snapshot is created before
            # the DB instance is deleted". An encrypted snapshot stays under the instance's key (RDS API reference,
            # RestoreDBInstanceFromDBSnapshot: restored "using the KMS key that was used to encrypt the DB snapshot").
            what = f"final snapshot {inputs.get('finalSnapshotIdentifier')} of {short(r['urn'])}"
            result.survivors.append(keys.of(r["urn"], what, encrypted, AWS_MANAGED["rds"]))
    for r in plan.of_type(MSK):
        if fate[r["urn"]] == "deleted":
            # MSK keeps no snapshot of a deleted cluster: the brokers' storage, and every topic on it, goes with it.
            result.lost.append(f"MSK {short(r['urn'])} deleted with all its topics' data")
        else:
            at_rest = (r["inputs"].get("encryptionInfo") or {}).get("encryptionAtRestKmsKeyArn")
            # pulumi_aws/msk/_inputs.py: "If no key is specified, an AWS managed KMS ('aws/msk' ...) key will be used"
            result.survivors.append(keys.of(r["urn"], f"MSK {short(r['urn'])}", at_rest, AWS_MANAGED["msk"]))
    for k in plan.of_type(KEY):
        if fate[k["urn"]] == "deleted":
            days = k["inputs"].get("deletionWindowInDays", 30)
            result.lost.append(f"{short(k['urn'])} scheduled for deletion ({days} days), then deleted by KMS")
    _volumes(plan, fate, keys, result)
    _stripped(plan, fate, result)


def _claim_sets(plan: Plan) -> list[tuple[dict[str, Any], list[str], bool, str | None]]:
    """(owner, claim names, whether deleting the owner deletes its claims, storage class) per volume-claiming owner."""
    found = []
    for s in plan.of_type(STATEFUL_SET):
        spec = s["inputs"].get("spec") or {}
        templates = spec.get("volumeClaimTemplates") or []
        # pulumi_kubernetes apps/v1 when_deleted: "The default policy of `Retain` causes PVCs to not be affected by
        # StatefulSet deletion. The `Delete` policy causes those PVCs to be deleted."
        with_owner = (spec.get("persistentVolumeClaimRetentionPolicy") or {}).get("whenDeleted") == "Delete"
        for t in templates:
            found.append((s, [t["metadata"]["name"]], with_owner, (t.get("spec") or {}).get("storageClassName")))
    for pool in plan.of_type(NODE_POOL):
        storage = (pool["inputs"].get("spec") or {}).get("storage") or {}
        for v in storage.get("volumes", [storage]) if storage.get("type") == "jbod" else [storage]:
            if v.get("type") == "persistent-claim":
                # upstream/crds/strimzi-kafka-operator-1.2.0/045-Crd-kafkanodepool.yaml deleteClaim: "whether the
                # persistent volume claim is deleted when a Kafka node is deleted. Optional. Defaults to `false`."
                found.append((pool, [f"volume {v.get('id', 0)}"], bool(v.get("deleteClaim")), v.get("class")))
    return found


def _volumes(plan: Plan, fate: dict[str, str], keys: _Keys, result: Destroy) -> None:
    classes = {c["inputs"].get("metadata", {}).get("name"): c for c in plan.of_type(STORAGE_CLASS)}
    default = next((c for c in classes.values() if (c["inputs"]["metadata"].get("annotations") or {})
                    .get("storageclass.kubernetes.io/is-default-class") == "true"), None)
    namespaces = {n: r["urn"] for r in plan.of_type(NAMESPACE) for n in r.get("identity", [])}
    for owner, claims, with_owner, class_name in _claim_sets(plan):
        storage_class = classes.get(class_name) if class_name else default
        params = (storage_class or {"inputs": {}})["inputs"].get("parameters") or {}
        key = params.get("kmsKeyId") or (AWS_MANAGED["ebs"] if params.get("encrypted") == "true" else UNENCRYPTED)
        namespace = namespaces.get((owner["inputs"].get("metadata") or {}).get("namespace"))
        what = f"EBS volumes of {short(owner['urn'])} ({', '.join(claims)})"
        # Deleting a namespace deletes everything in it, claims included (kubernetes.io/docs/tasks/administer-cluster/
        # namespaces: "Deleting a namespace will delete everything in the namespace"), whatever the owner's policy.
        if fate[owner["urn"]] == "deleted" and with_owner:
            gone_with = short(owner["urn"])
        elif namespace and fate[namespace] == "deleted":
            gone_with = short(namespace)
        else:
            result.survivors.append(keys.of(owner["urn"], f"{what}, claims kept", key, AWS_MANAGED["ebs"]))
            continue
        # pulumi_kubernetes storage/v1 reclaim_policy: "reclaimPolicy for dynamically provisioned PersistentVolumes
        # of this storage class. Defaults to Delete."
        if (storage_class or {"inputs": {}})["inputs"].get("reclaimPolicy", "Delete") != "Delete":
            result.survivors.append(keys.of(owner["urn"], f"{what}, released, reclaimPolicy Retain", key,
                                            AWS_MANAGED["ebs"]))
            continue
        result.lost.append(f"{what} deleted with {gone_with}")
        # The claim goes with the object; the EBS volume only when the CSI driver reclaims it afterwards, and nothing
        # makes the engine wait for that before it removes the driver, the nodes and the cluster.
        result.notes.append(f"{what}: reclaimed by the EBS CSI driver after {gone_with} is gone; if the engine "
                            "removes the driver first, they are left as unattached volumes")


def _stripped(plan: Plan, fate: dict[str, str], result: Destroy) -> None:
    """A retained resource outlives the settings declared as resources of their own, which the destroy deletes."""
    for urn in result.retained:
        service = plan.by_urn[urn]["type"].split("/")[0]
        gone = sorted({r["type"].split(":")[-1] for r in plan.resources if urn in r["dependsOn"]
                       and fate[r["urn"]] == "deleted" and r["type"].split("/")[0] == service})
        if gone:
            result.notes.append(f"retained {short(urn)} loses {', '.join(gone)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stack", required=True, choices=STACKS)
    parser.add_argument("--order", action="store_true", help="also print every step of the deletion order")
    args = parser.parse_args(argv)
    result = destroy(run_program(args.stack))
    print(result.summary())
    if args.order:
        marks = {**{u: "delete" for u in result.deleted}, **{u: "retain" for u in result.retained},
                 **{u: "skip" for u in result.not_reached}, result.failed_at: "FAIL"}
        for i, urn in enumerate(result.order, 1):
            print(f"{i:4d}  {marks.get(urn, '-'):6s}  {urn}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
