"""The cardfit engine: hardware probing, model specs, the memory estimator, the fit-test
runner and the report model. Plain Python; nothing here imports Qt, and nothing here
imports torch except the fit-test child."""
