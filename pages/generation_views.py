"""The Live intervention page's generation: one prompt continued by the clean model and by
the intervened one, side by side. Not a page."""

from __future__ import annotations

import streamlit as st

from core import Workspace
from core.interventions.generation import generate
from pages.common import ProgressBar


def generation_view(ws: Workspace, iv) -> None:
    with st.expander("Generation, clean vs intervened", expanded=False):
        prompt = st.text_input("Prompt", "The mitochondria is the")
        tokens = st.slider("New tokens", 4, 64, 24)
        if st.button("Generate"):
            sides = st.columns(2)
            bar = ProgressBar("Generating (the model loads first)…")
            for side, (name, edit) in zip(
                sides, (("Clean", None), ("Intervened", iv)), strict=True
            ):

                def report(done: int, total: int, name: str = name) -> None:
                    bar.count(done, total, "tokens", name)

                side.markdown(f"**{name}**")
                side.text(prompt + generate(ws, prompt, edit, tokens, report))
            bar.empty()
