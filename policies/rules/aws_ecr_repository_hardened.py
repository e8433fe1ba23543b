import json

from pulumi_policy import StackValidationArgs, StackValidationPolicy

from ._common import dig

REPOSITORY = "aws:ecr/repository:Repository"
LIFECYCLE_POLICY = "aws:ecr/lifecyclePolicy:LifecyclePolicy"


def expires_untagged(document) -> bool:
    """An ECR lifecycle policy (JSON text) with a rule that expires untagged images."""
    try:
        rules = dig(json.loads(document), "rules") if isinstance(document, str) else None
    except json.JSONDecodeError:
        return False
    return any(dig(r, "selection", "tagStatus") == "untagged" and dig(r, "action", "type") == "expire"
               for r in rules or [])


def problems(props, cleaned: bool) -> list[str]:
    found = []
    if dig(props, "imageTagMutability") != "IMMUTABLE":
        found.append("tags must be immutable (imageTagMutability: IMMUTABLE), or a push can change what a tag runs")
    if dig(props, "imageScanningConfiguration", "scanOnPush") is not True:
        found.append("images must be scanned on push (imageScanningConfiguration.scanOnPush: true)")
    if dig(props, "encryptionConfigurations", 0, "encryptionType") != "KMS" \
            or not dig(props, "encryptionConfigurations", 0, "kmsKey"):
        found.append("images must be encrypted with a customer-managed KMS key (encryptionType KMS with a kmsKey)")
    if not cleaned:
        found.append("no lifecycle policy expires its untagged images")
    return found


def validate(args: StackValidationArgs, report_violation) -> None:
    # A lifecycle policy is matched to its repository through the dependency graph (known in a preview, before the
    # repository's name output is).
    cleaned = {d.urn for r in args.resources if r.resource_type == LIFECYCLE_POLICY
               and expires_untagged(dig(r.props, "policy")) for d in r.dependencies}
    for repository in (r for r in args.resources if r.resource_type == REPOSITORY):
        for problem in problems(repository.props, repository.urn in cleaned):
            report_violation(f"repository {repository.name}: {problem}", repository.urn)


aws_ecr_repository_hardened = StackValidationPolicy(
    name="aws-ecr-repository-hardened",
    description="ECR repositories have immutable tags, scan on push, a customer-managed KMS key and a lifecycle "
                "policy that expires untagged images.",
    validate=validate,
)
