"""Live intervention: clamp features at the SAE's hook, score WMDP-bio and the side effects,
compare generations, sweep settings. core.evaluation.evaluator does the work; this page renders."""

from dataclasses import replace

import streamlit as st

from pages.common import workspace_with_statistics
from pages.feature_source_views import feature_source_view, gate_kept_with
from pages.generation_views import generation_view
from pages.job_views import workspace_runs
from pages.relearn_views import relearn_view
from pages.result_views import known_questions_view, questions_view, results_view, save_view
from pages.run_views import background_run, evaluator_for, intervention_form, intervention_of
from pages.screening_views import screening_view
from pages.sweep_views import sweep_view

st.title("Live intervention")
ws, table, _, store = workspace_with_statistics()
workspace_runs(ws.name)  # every run going on here, whatever settings the form now shows

chosen, feature_set = feature_source_view(ws, table, store)
features = list(chosen.features)
set_gate = gate_kept_with(feature_set, features)
set_name = feature_set.name if feature_set is not None else None
form = intervention_form(ws, table, chosen, set_name or chosen.source)
evaluator = evaluator_for(ws, form.settings)  # the selection split: what Run tunes on
reporter = evaluator_for(ws, replace(form.settings, split="report"))
iv = intervention_of(ws, table, features, form, set_gate, set_name)

tuned = background_run(ws, evaluator, iv, form.run, chosen.chosen_on, form.allow_overlap)
reported = background_run(ws, reporter, iv, form.report, chosen.chosen_on, form.allow_overlap)
for result in (tuned, reported):
    if result is not None:
        results_view(result)
if (shown := reported or tuned) is not None:
    questions_view(shown["questions"])
    save_view(ws.name, store, shown, feature_set, chosen, form.weights)
known_questions_view(evaluator)
generation_view(ws, iv)
screening_view(ws, features, form)
relearn_view(ws, iv)
sweep_view(ws.name, reporter, form)
