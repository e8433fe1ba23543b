"""The ordering referee (offline/ordering.py) over every stack, and proof that it catches what it guards against."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from offline.ordering import plain_references
from tests.helpers import run_component


def test_no_resource_names_another_by_a_plain_value_it_does_not_wait_for(plan):
    found = plain_references(plan)
    assert found == [], "\n".join(map(str, found))


def _cluster_and_entry(cluster_name_from_output: bool) -> None:
    cluster = aws.eks.Cluster("eks", name="demo", role_arn="arn:aws:iam::123456789012:role/eks",
                              vpc_config={"subnet_ids": ["subnet-1", "subnet-2"]})
    # The defect the Karpenter component had: the cluster's name as configured text, not as the cluster's output.
    aws.eks.AccessEntry("nodes", cluster_name=cluster.name if cluster_name_from_output else "demo",
                        principal_arn="arn:aws:iam::123456789012:role/nodes", type="EC2_LINUX")
    aws.ec2.Subnet("tagged", vpc_id="vpc-1", cidr_block="10.0.0.0/24", tags={"karpenter.sh/discovery": "demo"})


def test_a_plain_cluster_name_is_reported_and_the_output_is_not():
    found = plain_references(run_component(lambda: _cluster_and_entry(False)))
    assert [(f.urn.rsplit("::", 1)[-1], f.path, f.value) for f in found] == [("nodes", "clusterName", "demo")]
    assert found[0].targets[0].endswith("aws:eks/cluster:Cluster::eks")
    # With the Output the engine orders the entry after the cluster; the same name in a tag is not a reference.
    assert plain_references(run_component(lambda: _cluster_and_entry(True))) == []


def _namespaced(wait: bool) -> None:
    namespace = k8s.core.v1.Namespace("team", metadata={"name": "team"})
    k8s.core.v1.ConfigMap("settings", metadata={"name": "settings", "namespace": "team"}, data={"a": "b"},
                          opts=pulumi.ResourceOptions(depends_on=[namespace] if wait else []))


def test_an_object_placed_in_a_namespace_it_does_not_wait_for_is_reported():
    (found,) = plain_references(run_component(lambda: _namespaced(False)))
    assert (found.urn.rsplit("::", 1)[-1], found.path, found.value) == ("settings", "metadata.namespace", "team")
    assert plain_references(run_component(lambda: _namespaced(True))) == []


def _shared_name(wait: bool, wait_for: str = "eks") -> None:
    eks = aws.eks.Cluster("eks", name="platform", role_arn="arn:aws:iam::123456789012:role/eks",
                          vpc_config={"subnet_ids": ["subnet-1"]})
    msk = aws.msk.Cluster("msk", cluster_name="platform", kafka_version="3.9.x", number_of_broker_nodes=3,
                          broker_node_group_info={"instance_type": "kafka.m7g.large",
                                                  "client_subnets": ["a", "b", "c"]})
    aws.eks.Addon("dns", cluster_name="platform", addon_name="coredns",
                  opts=pulumi.ResourceOptions(depends_on=[{"eks": eks, "msk": msk}[wait_for]] if wait else []))


def test_a_name_two_resources_share_means_the_one_of_the_same_service():
    # An EKS add-on naming `platform` means the EKS cluster, even though an MSK cluster has the same name.
    (found,) = plain_references(run_component(lambda: _shared_name(False)))
    assert len(found.targets) == 1 and found.targets[0].endswith("aws:eks/cluster:Cluster::eks")
    assert plain_references(run_component(lambda: _shared_name(True))) == []
    # Waiting for the MSK cluster instead does not order the add-on after the EKS one.
    (found,) = plain_references(run_component(lambda: _shared_name(True, wait_for="msk")))
    assert found.targets[0].endswith("aws:eks/cluster:Cluster::eks")
