"""The platform's typed stack config: defaults, validation, and the catalogs it checks against."""

from platform_config.load import access_problem, load_config, load_stack_config, support_warning
from platform_config.model import (ClusterConfig, DataLakeConfig, GeneralPoolConfig, GpuPoolConfig, NetworkConfig,
                                   NodeGroupConfig, PlatformConfig)
from platform_config.reader import ConfigError

__all__ = ["access_problem", "ClusterConfig", "ConfigError", "DataLakeConfig", "GeneralPoolConfig", "GpuPoolConfig",
           "NetworkConfig", "NodeGroupConfig", "PlatformConfig", "load_config", "load_stack_config", "support_warning"]
