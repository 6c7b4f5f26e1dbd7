"""torchref: the PyTorch reference for jaxfit.

`build_model(config, num_features, num_classes)` is a `jaxfit.Config` as a stock PyTorch model;
`to_params` / `to_state_dict` convert between its `state_dict` (or that of the documents' own
`FeedForward` / `Model` / `ModelBN`, torchref.documents) and jaxfit's (params, model_state);
`train(data, config, params=, model_state=, batch_order=, dropout_masks=)` trains it with
torch.optim and reports jaxfit's per-epoch metrics.
"""

from .convert import (LAYOUTS, MLP, Fourier, Sin, Standardize, build_model, cast_inputs, detect_layout, to_params,
                      to_state_dict)
from .train import TorchResult, train, train_many

__all__ = ["LAYOUTS", "MLP", "cast_inputs", "detect_layout", "Fourier", "Sin", "Standardize", "TorchResult", "build_model", "to_params", "to_state_dict",
           "train", "train_many"]
