"""All rules of the pack; each file holds one rule named after it."""

from .aws_ec2_launch_template_hardened import aws_ec2_launch_template_hardened
from .aws_eks_cluster_hardened import aws_eks_cluster_hardened
from .aws_iam_no_wildcard_admin import aws_iam_no_wildcard_admin
from .aws_kms_key_rotation import aws_kms_key_rotation
from .aws_msk_cluster_hardened import aws_msk_cluster_hardened
from .aws_rds_instance_hardened import aws_rds_instance_hardened
from .aws_s3_bucket_encryption import aws_s3_bucket_encryption
from .aws_s3_bucket_guarded import aws_s3_bucket_guarded
from .aws_s3_bucket_public_access_block import aws_s3_bucket_public_access_block
from .aws_s3_bucket_tls_only import aws_s3_bucket_tls_only
from .karpenter_node_class_hardened import karpenter_node_class_hardened
from .kubernetes_explicit_provider import kubernetes_explicit_provider
from .kubernetes_helm_release_pinned import kubernetes_helm_release_pinned
from .kubernetes_pods_hardened import kubernetes_pods_hardened

ALL_POLICIES = [
    aws_ec2_launch_template_hardened, aws_eks_cluster_hardened, aws_iam_no_wildcard_admin, aws_kms_key_rotation,
    aws_msk_cluster_hardened, aws_rds_instance_hardened, aws_s3_bucket_encryption, aws_s3_bucket_guarded,
    aws_s3_bucket_public_access_block, aws_s3_bucket_tls_only, karpenter_node_class_hardened,
    kubernetes_explicit_provider, kubernetes_helm_release_pinned, kubernetes_pods_hardened,
]
