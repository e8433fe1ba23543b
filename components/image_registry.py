"""The ECR repositories the stack's workload images are pulled from, and the references pods use to pull them.

One repository per image the platform builds (`PLATFORM_IMAGES`, every `workloads/<name>/Dockerfile`), named
`<project>-<stack>/<image>`. The images workflow (.github/workflows/images.yml) pushes each git commit's build under
its sha; the deploy pins what it pushed by digest (`images.digests`).

Nodes pull with their role's `AmazonEC2ContainerRegistryPullOnly` (components/system_nodes.py NODE_POLICIES, the
system nodes' and Karpenter's node role alike): an identity policy is all a pull from the same account needs, so the
repositories carry no repository policy. ECR encrypts and decrypts layers through the grants it creates on the key
when a repository is created (ECR user guide, "Encryption at rest"), so the node role needs no KMS permission either.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.service_access import service_key
from platform_config.services_model import PLATFORM_IMAGES, ImagesConfig, ecr_repository_name

# Untagged images are never deployed: the workflow tags every push with its commit, and a tag cannot move
# (IMMUTABLE), so an untagged image is the leftover of a push that failed before its tag was written. Tagged images
# are kept: each is a commit some stack may run or roll back to (prod can run an older release than dev), and a
# lifecycle rule cannot see what is deployed, so it could expire an image a running Deployment still pulls on its next
# scale-out or node replacement. Pruning old releases is a deliberate step, not a timer.
UNTAGGED_EXPIRY_DAYS = 7
LIFECYCLE_POLICY = {"rules": [{
    "rulePriority": 1,
    "description": f"Expire untagged images {UNTAGGED_EXPIRY_DAYS} days after push",
    "selection": {"tagStatus": "untagged", "countType": "sinceImagePushed", "countUnit": "days",
                  "countNumber": UNTAGGED_EXPIRY_DAYS},
    "action": {"type": "expire"},
}]}


def ecr_registry_host(region: str, opts: pulumi.InvokeOptions) -> str:
    """`<account>.dkr.ecr.<region>.<dns suffix>` of the caller's account, as plain text: references are part of
    object names and hashes (components/mlflow.py) that are computed before any resource exists."""
    account = aws.get_caller_identity(opts=opts).account_id
    return f"{account}.dkr.ecr.{region}.{aws.get_partition(opts=opts).dns_suffix}"


@dataclass(frozen=True, kw_only=True)
class ImageRegistryArgs:
    config: ImagesConfig
    """`images`: with `registry` set, the images come from there and no repository is declared here."""
    name_prefix: str
    """`<project>-<stack>`: the repositories' namespace."""
    region: str
    """The stack's region: the repositories are in it, and the registry host names it."""
    protect: bool = False
    """The stack's data is protected (`dataLake.protect`, prod): the repositories and their key are protected and
    retained on destroy, and never emptied. Otherwise a destroy deletes them with their images (`forceDelete`):
    images are rebuilt from git, and a retained repository would keep its fixed name and refuse the next deploy."""


class ImageRegistry(pulumi.ComponentResource):
    host: str
    """The registry the images are pulled from: this account's ECR in the stack's region, or `images.registry`."""
    repository_names: dict[str, str]
    """Image name -> this stack's ECR repository name; empty with an external `images.registry`."""

    def __init__(self, name: str, args: ImageRegistryArgs, opts: pulumi.ResourceOptions | None = None):
        super().__init__("mlplatform:images:ImageRegistry", name, None, opts)
        self._config = args.config
        self.repository_names = {}
        if args.config.registry:
            self.host = args.config.registry
            self.register_outputs({"host": self.host})
            return
        self.host = ecr_registry_host(args.region, pulumi.InvokeOptions(parent=self))
        self.repository_names = {image: ecr_repository_name(args.name_prefix, image) for image in PLATFORM_IMAGES}
        keep = pulumi.ResourceOptions(parent=self, protect=args.protect, retain_on_delete=args.protect)
        # Its own key, not the lake's: a repository's key cannot change (another key means a new repository, without
        # its images), so the images must not hang on a key whose fate follows the data's (kept when the lake is
        # kept, replaced when it is); and what may use the lake key stays the lake's business.
        key = service_key(name, f"{args.name_prefix} workload images (ECR)", args.protect, self)
        for image, repository_name in self.repository_names.items():
            repository = aws.ecr.Repository(
                f"{name}-{image}", name=repository_name,
                # A tag names one build forever: a re-run cannot swap what a stack pinned by tag.
                image_tag_mutability="IMMUTABLE",
                image_scanning_configuration={"scan_on_push": True},
                encryption_configurations=[{"encryption_type": "KMS", "kms_key": key.arn}],
                force_delete=not args.protect, opts=keep)
            aws.ecr.LifecyclePolicy(f"{name}-{image}", repository=repository.name,
                                    policy=json.dumps(LIFECYCLE_POLICY), opts=keep)
        self.register_outputs({"host": self.host, "repository_names": self.repository_names})

    @property
    def repository_urls(self) -> dict[str, str]:
        """Image name -> `<host>/<repository>`, where the images workflow pushes it."""
        return {image: f"{self.host}/{name}" for image, name in self.repository_names.items()}

    def ref(self, image: str, override: str = "") -> str:
        """What pods pull for `image` (one of PLATFORM_IMAGES); a model's own reference (`override`) wins."""
        if override:
            return override
        own = "" if self._config.registry else self.repository_urls[image]
        return self._config.ref(image, own)
