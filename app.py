"""Unlearning Lens: the entry point only builds navigation and the workspace sidebar.

Pages have URL paths unlike their file names: a URL naming a file in pages/ would otherwise
run that file alone (Streamlit's pages-folder routing), without this sidebar."""

import logging

import streamlit as st

from core.base.environment import configure_environment

configure_environment()

from core.errors import UserError  # noqa: E402
from pages.common import plain, workspace_sidebar  # noqa: E402  (after the environment is set)

st.set_page_config(page_title="Unlearning Lens", page_icon=":material/biotech:", layout="wide")

navigation = st.navigation(
    [
        st.Page("pages/workspace.py", title="Workspace", icon=":material/home:", default=True),
        st.Page(
            "pages/feature_search.py",
            title="Feature search",
            icon=":material/search:",
            url_path="search",
        ),
        st.Page(
            "pages/activation_examples.py",
            title="Activation examples",
            icon=":material/format_ink_highlighter:",
            url_path="examples",
        ),
        st.Page(
            "pages/intervention.py",
            title="Live intervention",
            icon=":material/tune:",
            url_path="intervene",
        ),
        st.Page(
            "pages/run_history.py",
            title="Run history",
            icon=":material/history:",
            url_path="history",
        ),
    ]
)
workspace_sidebar()  # after the pages are known: it links to one
try:
    navigation.run()
except UserError as exc:  # a page that let one through: the message is meant for the user
    st.error(plain(exc))
except Exception:
    logging.getLogger("unlearning_lens.app").exception("The page failed")
    st.error(
        "Something went wrong on this page; the details are in the server's log. "
        "Reload to try again."
    )
