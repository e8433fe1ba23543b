"""The ML platform: network, data lake, EKS with GPU pools. Wiring only; each piece lives in components/."""

import pulumi
import pulumi_aws as aws

from components.cluster import Cluster, ClusterArgs
from components.cluster_addons import AFTER_NODES, BEFORE_NODES, ClusterAddons, ClusterAddonsArgs
from components.data_lake import DataLake, DataLakeArgs
from components.gpu_pool import GpuPool, GpuPoolArgs
from components.karpenter import Karpenter, KarpenterArgs
from components.network import Network, NetworkArgs
from components.nvidia_device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.system_nodes import SystemNodes, SystemNodesArgs
from platform_config import load_stack_config

project, stack = pulumi.get_project(), pulumi.get_stack()
# Validate the whole config first: a bad stack fails here, before a single resource is declared.
cfg = load_stack_config(project, stack)

aws_provider = aws.Provider("aws", region=cfg.region, default_tags={"tags": {
    **cfg.tags, "mlplatform.io/project": project, "mlplatform.io/stack": stack, "environment": cfg.environment,
    "managed-by": "pulumi"}})
with_aws = pulumi.ResourceOptions(providers=[aws_provider])
account_id = aws.get_caller_identity_output(opts=pulumi.InvokeOutputOptions(provider=aws_provider)).account_id

network = Network("network", NetworkArgs(config=cfg.network, cluster_name=cfg.cluster.name, region=cfg.region),
                  opts=with_aws)
lake = DataLake("data-lake", DataLakeArgs(config=cfg.data_lake, name_prefix=f"{project}-{stack}-"), opts=with_aws)
cluster = Cluster("eks", ClusterArgs(config=cfg.cluster, region=cfg.region, subnet_ids=network.private_subnet_ids),
                  opts=with_aws)

identity = {"mode": cfg.cluster.workload_identity, "oidc_provider_arn": cluster.oidc_provider_arn,
            "oidc_issuer": cluster.oidc_issuer, "account_id": account_id}
addons = ClusterAddons("addons", ClusterAddonsArgs(cluster_name=cluster.name, versions=cfg.cluster.addon_versions,
                                                   identity=identity), opts=with_aws)
networking_addons = addons.install(BEFORE_NODES, depends_on=[])
system_nodes = SystemNodes("system-nodes", SystemNodesArgs(
    config=cfg.system_nodes, cluster_name=cluster.name, subnet_ids=network.private_subnet_ids,
    depends_on=networking_addons), opts=with_aws)
node_addons = addons.install(AFTER_NODES, depends_on=[system_nodes])
addons.default_storage_class(cluster.provider)
addons.finish()

karpenter = Karpenter("karpenter", KarpenterArgs(
    cluster_name=cfg.cluster.name, cluster_arn=cluster.arn, region=cfg.region, account_id=account_id,
    k8s_provider=cluster.provider, identity=identity, depends_on=[system_nodes, *node_addons]), opts=with_aws)
gpu_pools = [GpuPool(f"gpu-pool-{pool.name}", GpuPoolArgs(
    config=pool, cluster_name=cfg.cluster.name, node_role_name=karpenter.node_role_name,
    cluster_security_group_id=cluster.security_group_id, k8s_provider=cluster.provider,
    depends_on=[karpenter.crds, karpenter.controller])) for pool in cfg.gpu_pools]
NvidiaDevicePlugin("nvidia-device-plugin", NvidiaDevicePluginArgs(k8s_provider=cluster.provider,
                                                                  depends_on=[system_nodes]))

pulumi.export("region", cfg.region)
pulumi.export("vpcId", network.vpc_id)
pulumi.export("privateSubnetIds", network.private_subnet_ids)
pulumi.export("clusterName", cluster.name)
pulumi.export("clusterEndpoint", cluster.endpoint)
pulumi.export("kubeconfig", cluster.kubeconfig)
pulumi.export("workloadIdentityMode", cfg.cluster.workload_identity)
pulumi.export("dataLakeBuckets", lake.bucket_names)
pulumi.export("dataLakeKmsKeyArn", lake.kms_key_arn)
pulumi.export("gpuNodePools", [{"name": p.name, "instanceTypes": p.instance_types, "capacityType": p.capacity_type,
                                "maxNodes": p.max_nodes, "maxGpus": p.max_gpus} for p in cfg.gpu_pools])
