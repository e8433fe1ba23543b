"""The destroy referee (offline/destroy.py) over every stack, and proof that it catches what it guards against.

Each stack has a promise about `pulumi destroy`, written below as a function returning what breaks it. The failing
cases are mutated copies of the real plans: one setting changed, the way the defect would appear in the program.
"""

from __future__ import annotations

import copy
from typing import Callable

import pytest

from offline.destroy import BUCKET, EKS, KEY, MSK, NODE_POOL, RDS, Destroy, deletion_order, destroy, main, short
from offline.harness import STACKS, Plan
from offline.ordering import ancestors
from tests.conftest import stack_plan

DATA_STORES = (BUCKET, RDS, MSK)


def mutated(stack: str | Plan, type_: str, name: str, edit: Callable[[dict], object]) -> Plan:
    plan = stack_plan(stack) if isinstance(stack, str) else stack
    resources = copy.deepcopy(plan.resources)
    edit(next(r for r in resources if r["type"] == type_ and r["name"] == name))
    return Plan(plan.stack, plan.project, resources, plan.outputs)


def data_outliving_keys(result: Destroy) -> list[str]:
    return [f"{s.what} outlives its key {s.key}" for s in result.unreadable]


def runs_to_the_end(result: Destroy) -> list[str]:
    if result.refused:
        return [f"refused: {len(result.why)} protected resources"]
    if result.failed_at:
        return [f"fails at {short(result.failed_at)}: {result.error}"]
    return []


def dev(plan: Plan, result: Destroy) -> list[str]:
    """Dev data is disposable: the destroy leaves nothing behind."""
    return [*runs_to_the_end(result), *(f"{s.what} survives" for s in result.survivors)]


def staging(plan: Plan, result: Destroy) -> list[str]:
    """Staging data is kept, but not protected: the destroy runs to the end and leaves data it can still read."""
    problems = [*runs_to_the_end(result), *data_outliving_keys(result)]
    lake_key = plan.one(KEY, "data-lake-key")
    left = {s.urn: s for s in result.survivors}
    for bucket in plan.of_type(BUCKET):
        if bucket["urn"] not in result.retained:
            problems.append(f"{short(bucket['urn'])} is not retained")
    for area in ("raw", "curated", "artifacts"):
        kept = left.get(plan.one(BUCKET, f"data-lake-{area}")["urn"])
        if not (kept and lake_key["name"] in kept.key and kept.key_survives):
            problems.append(f"data-lake-{area} is not left under a surviving lake key")
    for db in plan.of_type(RDS):
        kept = left.get(db["urn"])
        if not (kept and kept.what.startswith("final snapshot") and kept.key_survives):
            problems.append(f"{short(db['urn'])} leaves no final snapshot under a surviving key")
    return problems


def prod(plan: Plan, result: Destroy) -> list[str]:
    """Prod is refused up front, or else every data store and its key stays where it is."""
    if result.refused:
        return data_outliving_keys(result)
    problems = [*runs_to_the_end(result), *data_outliving_keys(result)]
    left = {s.urn for s in result.survivors if not s.what.startswith("final snapshot")}
    for store in (r for t in DATA_STORES for r in plan.of_type(t)):
        if store["urn"] not in result.retained or store["urn"] not in left:
            problems.append(f"{short(store['urn'])} is not retained")
    return problems


PROMISES = {"dev": dev, "staging": staging, "prod": prod}


@pytest.mark.parametrize("stack", STACKS)
def test_destroy_keeps_the_stacks_promise(stack):
    plan = stack_plan(stack)
    result = destroy(plan)
    assert PROMISES[stack](plan, result) == [], result.summary()


def test_no_data_outlives_the_key_that_encrypts_it(plan):
    result = destroy(plan)
    assert data_outliving_keys(result) == [], result.summary()


def test_the_deletion_order_deletes_each_resource_after_everything_that_needs_it(plan):
    order = deletion_order(plan)
    assert sorted(order) == sorted(plan.by_urn)
    position = {urn: i for i, urn in enumerate(order)}
    for r in plan.resources:
        for needed in (*r["dependsOn"], r["provider"], r["parent"]):
            if needed:
                assert position[r["urn"]] < position[needed], f"{r['urn']} must go before {needed}"


def test_prod_is_refused_up_front():
    result = destroy(stack_plan("prod"))
    assert result.refused and result.deleted == [] and result.failed_at is None
    assert {short(u) for u in result.why} >= {"Bucket data-lake-raw", "Instance mlflow-db-postgres", "Cluster eks"}


# The defects, one per fixture.

def test_a_lake_key_not_retained_leaves_staging_buckets_unreadable():  # review W5
    plan = mutated("staging", KEY, "data-lake-key", lambda r: r.update(retainOnDelete=False))
    result = destroy(plan)
    assert data_outliving_keys(result) == [
        f"Bucket data-lake-{area} outlives its key data-lake-key ({plan.one(KEY, 'data-lake-key')['identity'][0]})"
        for area in ("artifacts", "curated", "raw")]
    assert "data-lake-raw is not left under a surviving lake key" in staging(plan, result)
    assert "verdict: 3 pieces of data outlive their key" in result.summary()


def test_a_database_key_not_retained_leaves_the_final_snapshot_unreadable():  # review W4
    plan = mutated("staging", KEY, "mlflow-db-key", lambda r: r.update(retainOnDelete=False))
    (lost,) = data_outliving_keys(destroy(plan))
    assert lost.startswith("final snapshot ml-platform-staging-mlflow-final-") and "mlflow-db-key" in lost
    assert "Instance mlflow-db-postgres leaves no final snapshot under a surviving key" in staging(plan, destroy(plan))


def test_eks_deletion_protection_without_protect_fails_the_destroy_after_tearing_down_the_rest():  # review W7
    plan = mutated("staging", EKS, "eks", lambda r: r["inputs"].update(deletionProtection=True))
    result = destroy(plan)
    cluster = plan.one(EKS, "eks")["urn"]
    assert result.failed_at == cluster and "deletionProtection" in result.error
    assert staging(plan, result)[0] == "fails at Cluster eks: deletionProtection is on: the cluster cannot be deleted"
    # Everything that runs on the cluster is already gone; only what the cluster itself stands on is left.
    needs_cluster = {urn for urn, before in ancestors(plan).items() if cluster in before}
    managed = {r["urn"] for r in plan.resources if r["custom"] and not r["type"].startswith("pulumi:")}
    assert needs_cluster & managed <= set(result.deleted) | set(result.retained)
    assert set(result.not_reached) == ancestors(plan)[cluster] & managed


def test_rds_deletion_protection_without_protect_fails_the_destroy():
    plan = mutated("staging", RDS, "mlflow-db-postgres", lambda r: r["inputs"].update(deletionProtection=True))
    result = destroy(plan)
    assert short(result.failed_at) == "Instance mlflow-db-postgres"
    assert "RDS Instance mlflow-db-postgres" in {s.what for s in result.survivors}


def test_a_dev_bucket_without_force_destroy_stops_the_destroy():
    plan = mutated("dev", BUCKET, "data-lake-raw", lambda r: r["inputs"].update(forceDestroy=False))
    result = destroy(plan)
    assert short(result.failed_at) == "Bucket data-lake-raw" and result.error.startswith("BucketNotEmpty")
    problems = dev(plan, result)
    assert problems[0].startswith("fails at Bucket data-lake-raw: BucketNotEmpty")
    assert "Bucket data-lake-raw survives" in problems
    # The lake key waits for its buckets, so it is not reached either: the bucket left behind stays readable.
    assert data_outliving_keys(result) == []


def test_volumes_on_a_retaining_storage_class_survive_dev():
    plan = mutated("dev", "kubernetes:storage.k8s.io/v1:StorageClass", "addons-gp3",
                   lambda r: r["inputs"].update(reclaimPolicy="Retain"))
    survivors = destroy(plan).survivors
    assert [s.what for s in survivors] == [
        "EBS volumes of StatefulSet mlflow-db-statefulset (data), released, reclaimPolicy Retain",
        "EBS volumes of KafkaNodePool kafka-nodes (volume 0), released, reclaimPolicy Retain"]
    # Left behind, but under the AWS-managed EBS key that no destroy deletes.
    assert all(s.key == "aws/ebs (AWS-managed)" and s.key_survives for s in survivors)
    assert len(dev(plan, destroy(plan))) == 2


def test_kafka_claims_that_are_kept_survive_when_their_namespace_does():
    kept = mutated("dev", NODE_POOL, "kafka-nodes", lambda r: r["inputs"]["spec"]["storage"]["volumes"][0].update(
        deleteClaim=False))
    # Deleting the namespace deletes the claims in it whatever deleteClaim says; retained, it leaves them.
    assert dev(kept, destroy(kept)) == []
    plan = mutated(kept, "kubernetes:core/v1:Namespace", "kafka", lambda r: r.update(retainOnDelete=True))
    assert dev(plan, destroy(plan)) == ["EBS volumes of KafkaNodePool kafka-nodes (volume 0), claims kept survives"]


def test_one_protected_resource_refuses_the_whole_destroy():
    plan = mutated("dev", KEY, "data-lake-key", lambda r: r.update(protect=True))
    result = destroy(plan)
    assert result.refused and result.deleted == [] and dev(plan, result)[0] == "refused: 1 protected resources"


def test_prod_unprotected_by_hand_still_keeps_its_data_stores():
    # `pulumi state unprotect --all` lifts the up-front refusal; the data stores are retained as well.
    plan = stack_plan("prod")
    unprotected = Plan(plan.stack, plan.project, [{**r, "protect": False} for r in plan.resources], plan.outputs)
    result = destroy(unprotected)
    problems = prod(unprotected, result)
    # EKS deletion protection still stops the destroy, but no data store is deleted before it.
    assert problems[0].startswith("fails at ") and "deletionProtection is on" in problems[0]
    assert not any("kafka-cluster" in p or "mlflow-db-postgres" in p for p in problems)
    assert not any("MSK" in lost for lost in result.lost)


def test_prod_without_retention_on_its_data_stores_would_lose_them():
    plan = stack_plan("prod")
    stores = {"aws:msk/cluster:Cluster", "aws:rds/instance:Instance"}
    bare = Plan(plan.stack, plan.project, [{**r, "protect": False, "retainOnDelete": r["retainOnDelete"] and r["type"]
                                            not in stores} for r in plan.resources], plan.outputs)
    result = destroy(bare)
    problems = prod(bare, result)
    assert "MSK Cluster kafka-cluster deleted with all its topics' data" in result.lost
    assert {"Cluster kafka-cluster is not retained", "Instance mlflow-db-postgres is not retained"} <= set(problems)


def test_the_command_prints_the_summary(capsys, monkeypatch):
    monkeypatch.setattr("offline.destroy.run_program", stack_plan)
    assert main(["--stack", "staging"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("destroy staging: runs to the end")
    assert "verdict: every piece of data left keeps its key" in out


def test_nothing_retained_blocks_deploying_the_stack_again(plans):
    # Staging is torn down and rebuilt: a retained resource with a fixed name would make the rebuild fail.
    for stack, plan in plans.items():
        assert destroy(plan).blocks_rebuild == [], stack


def test_a_retained_fixed_name_is_reported_as_blocking_the_rebuild():
    # The lake key's alias was retained with the key (caught in review): the next up's CreateAlias is refused.
    plan = stack_plan("staging")
    resources = [{**r, "retainOnDelete": True} if r["type"] == "aws:kms/alias:Alias" else r for r in plan.resources]
    (found,) = destroy(Plan(plan.stack, plan.project, resources, plan.outputs)).blocks_rebuild
    assert found.startswith("Alias data-lake-key keeps name 'alias/ml-platform-staging-data-lake'")
