"""``kav4mailservers.conf``: one schema, one loader, one writer for every component (guide 4.1, 6)."""

from runtime.config.editor import Assignment, apply_assignments, parse_assignment, set_values
from runtime.config.model import ConfigError, Group, KavConfig, Message, load_config, loads_config
from runtime.config.schema import CONFIG_FILE, GROUP_ATTRS, SECTIONS, STATUSES, section_schema

__all__ = [
    "Assignment",
    "CONFIG_FILE",
    "ConfigError",
    "GROUP_ATTRS",
    "Group",
    "KavConfig",
    "Message",
    "SECTIONS",
    "STATUSES",
    "apply_assignments",
    "load_config",
    "loads_config",
    "parse_assignment",
    "section_schema",
    "set_values",
]
