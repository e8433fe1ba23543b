from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy


def validate(args: ResourceValidationArgs, report_violation) -> None:
    if args.resource_type != "aws:msk/cluster:Cluster":
        return
    p = args.props
    transit = (p.get("encryptionInfo") or {}).get("encryptionInTransit") or {}
    if transit.get("clientBroker", "TLS") != "TLS" or transit.get("inCluster", True) is not True:
        report_violation("Kafka traffic must be TLS between clients and brokers and inside the cluster", None)
    auth = p.get("clientAuthentication") or {}
    if auth.get("unauthenticated") is True or not ((auth.get("sasl") or {}).get("iam") or auth.get("tls")):
        report_violation("clients must authenticate (IAM or mTLS); unauthenticated access is not allowed", None)
    if not (p.get("encryptionInfo") or {}).get("encryptionAtRestKmsKeyArn"):
        report_violation("data at rest must use a customer-managed KMS key", None)


aws_msk_cluster_hardened = ResourceValidationPolicy(
    name="aws-msk-cluster-hardened",
    description="MSK clusters use TLS everywhere, authenticated clients and a customer-managed KMS key.",
    validate=validate,
)
