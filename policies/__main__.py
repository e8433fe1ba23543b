"""Policy pack entry point: `pulumi preview --policy-pack policies`. Constructing the pack starts CrossGuard's gRPC
server and never returns, so this file only wires rules together and nothing imports it."""

from pulumi_policy import EnforcementLevel, PolicyPack

from rules import ALL_POLICIES

PolicyPack(name="ml-platform-guardrails", enforcement_level=EnforcementLevel.MANDATORY, policies=ALL_POLICIES)
