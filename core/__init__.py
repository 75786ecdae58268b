"""Unlearning Lens core: workspaces, models, SAEs, data and the computations on them.

No streamlit here: the app's pages and the CLI (`python -m core`) both call this package.
"""

from core.base.config import WorkspaceConfig
from core.base.config_files import list_workspaces, load_config
from core.errors import UserError
from core.workspace.workspace import Workspace

__all__ = ["UserError", "Workspace", "WorkspaceConfig", "list_workspaces", "load_config"]
