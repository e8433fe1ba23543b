from pulumi_policy import StackValidationArgs, StackValidationPolicy


def validate(args: StackValidationArgs, report_violation) -> None:
    """A default provider would deploy to whatever cluster the operator's KUBECONFIG points at."""
    for r in args.resources:
        if not r.resource_type.startswith("kubernetes:"):
            continue
        provider = r.provider
        if provider is None or provider.name.startswith("default"):
            report_violation(f"{r.resource_type} {r.name} uses the default Kubernetes provider; pass the cluster's "
                             "provider explicitly", r.urn)


kubernetes_explicit_provider = StackValidationPolicy(
    name="kubernetes-explicit-provider",
    description="Every Kubernetes resource uses the platform cluster's provider, never the ambient kubeconfig.",
    validate=validate,
)
