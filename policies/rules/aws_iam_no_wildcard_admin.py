from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

from ._common import as_list, statements

DOCUMENTS = {"aws:iam/rolePolicy:RolePolicy": "policy", "aws:iam/policy:Policy": "policy"}


def validate(args: ResourceValidationArgs, report_violation) -> None:
    field = DOCUMENTS.get(args.resource_type)
    if field is None:
        return
    for i, st in enumerate(statements(args.props.get(field))):
        if st.get("Effect") != "Allow":
            continue
        actions = [a for a in as_list(st.get("Action", [])) if isinstance(a, str)]
        if "*" in actions:
            report_violation(f"statement {i} allows Action '*'", None)
        elif any("*" in a for a in actions) and "*" in as_list(st.get("Resource", [])):
            report_violation(f"statement {i} allows wildcard actions {[a for a in actions if '*' in a]} on "
                             "Resource '*'", None)


aws_iam_no_wildcard_admin = ResourceValidationPolicy(
    name="aws-iam-no-wildcard-admin",
    description="IAM policies never allow wildcard actions on wildcard resources.",
    validate=validate,
)
