"""Choosing features: METHOD §4's frequency selection and DSG's, gradient attribution,
screening, and where a run's features come from. Whatever chooses sees the selection half."""
