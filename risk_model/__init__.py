"""The fitted model at run time: what training writes and serving reads.

The bundle format and its version, the encoding, survival and cumulative-incidence curves (Breslow baselines),
intervals, out-of-distribution checks, explanations and stop timing. It imports nothing of training/ and no
tracking, tuning or training-only library (mlflow, optuna, lifelines, scikit-survival, shap, matplotlib).
"""
