"""What a person looks at: plotly figures, trial notes, optuna-dashboard registration, reports."""
