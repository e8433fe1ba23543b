"""The platform's typed stack config: defaults, validation, and the catalogs it checks against."""

from platform_config.load import access_problem, load_config, load_stack_config, support_warning
from platform_config.model import (ClusterConfig, DataLakeConfig, GeneralPoolConfig, GpuPoolConfig, GpuSharing,
                                   NetworkConfig, NodeGroupConfig, PlatformConfig)
from platform_config.reader import ConfigError
from platform_config.teams_model import ModelConfig, TeamConfig

__all__ = ["access_problem", "ClusterConfig", "ConfigError", "DataLakeConfig", "GeneralPoolConfig", "GpuPoolConfig",
           "GpuSharing", "ModelConfig", "NetworkConfig", "NodeGroupConfig", "PlatformConfig", "TeamConfig",
           "load_config", "load_stack_config", "support_warning"]
