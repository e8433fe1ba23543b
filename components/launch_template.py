"""Launch-template settings shared by every node the platform launches (managed node group and Karpenter)."""

# Hop limit 1: the IMDSv2 token cannot cross the extra network hop into a pod's namespace, so pods cannot borrow the
# node role. Nothing here needs that: every workload that calls AWS gets its own role through WorkloadIdentity, and
# host-network add-ons (VPC CNI, kube-proxy, Pod Identity agent) are still one hop away.
IMDS_HOP_LIMIT = 1
ROOT_DEVICE = "/dev/xvda"  # AL2023's root device
