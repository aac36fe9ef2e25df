"""The registered model's code, logged with MLflow's models-from-code.

MLflow copies this file into the model and runs it on load: it names the installed quantray's
model class, so loading executes the quantray code of the environment and unpickles nothing.
Only MLflow runs this file; nothing in quantray imports it.
"""

from mlflow.models import set_model

from quantray.registry.pyfunc import QuantrayEnsembleModel

set_model(QuantrayEnsembleModel())
