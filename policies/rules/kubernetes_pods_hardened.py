from pulumi_policy import ResourceValidationArgs, ResourceValidationPolicy

WORKLOADS = {"kubernetes:apps/v1:Deployment": ("spec", "template", "spec"),
             "kubernetes:apps/v1:StatefulSet": ("spec", "template", "spec"),
             "kubernetes:batch/v1:CronJob": ("spec", "jobTemplate", "spec", "template", "spec")}


def _pod(props: dict, path: tuple[str, ...]) -> dict:
    for key in path:
        props = props.get(key) or {}
    return props


def validate(args: ResourceValidationArgs, report_violation) -> None:
    path = WORKLOADS.get(args.resource_type)
    if path is None:
        return
    pod = _pod(args.props, path)
    if (pod.get("securityContext") or {}).get("runAsNonRoot") is not True:
        report_violation("pods must run as non-root (securityContext.runAsNonRoot: true)", None)
    for c in [*(pod.get("initContainers") or []), *(pod.get("containers") or [])]:
        name, image = c.get("name", "?"), c.get("image", "")
        if "@sha256:" not in image and (":" not in image.rsplit("/", 1)[-1] or image.endswith(":latest")):
            report_violation(f"container {name}: image {image!r} must be pinned to a tag or digest, never latest",
                             None)
        limits = (c.get("resources") or {}).get("limits") or {}
        if not {"cpu", "memory"} <= set(limits):
            report_violation(f"container {name}: cpu and memory limits are required", None)
        if (c.get("securityContext") or {}).get("allowPrivilegeEscalation") is not False:
            report_violation(f"container {name}: allowPrivilegeEscalation must be false", None)


kubernetes_pods_hardened = ResourceValidationPolicy(
    name="kubernetes-pods-hardened",
    description="Platform pods run non-root, with pinned images, resource limits and no privilege escalation.",
    validate=validate,
)
